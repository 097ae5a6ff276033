"""Evaluation runs kept in hearth's database: one `eval_runs` row per (model, task,
settings) run with its status, item count, duration and hearth version; its aggregated
numbers in `eval_metrics`; every scored item in `eval_items`, which is what lets an
interrupted run resume (and what the aggregation is recomputed from).

Knows nothing of models, prompts or the CLI; tables live on `hearth.db.Base`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    delete,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Mapped, Session, mapped_column

from hearth import __version__
from hearth.db import Base, ensure_tables, get_engine
from hearth.errors import NotFoundError
from hearth.eval.tasks.base import MetricResult, Scored
from hearth.model.quant_modes import QUANT_MODES

RUNNING, INTERRUPTED, COMPLETE = "running", "interrupted", "complete"


class EvalRunRow(Base):
    __tablename__ = "eval_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_key: Mapped[str] = mapped_column(String(64), index=True)  # same settings, same key
    model_name: Mapped[str] = mapped_column(String(200), index=True)
    model_digest: Mapped[str] = mapped_column(String(80), default="")
    backend: Mapped[str] = mapped_column(String(20))
    task: Mapped[str] = mapped_column(String(60))
    num_fewshot: Mapped[int] = mapped_column(Integer)
    limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    seed: Mapped[int] = mapped_column(Integer)
    max_gen_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # how the weights were run (--quant); added after the first release, see _add_quant_column
    quant: Mapped[str] = mapped_column(String(10), default="none", server_default="none")
    status: Mapped[str] = mapped_column(String(16))
    num_items: Mapped[int] = mapped_column(Integer)  # planned
    num_scored: Mapped[int] = mapped_column(Integer, default=0)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)  # scoring time, all sessions
    hearth_version: Mapped[str] = mapped_column(String(40))
    samples_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class EvalMetricRow(Base):
    __tablename__ = "eval_metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(String(60))
    subtask: Mapped[str] = mapped_column(String(100), default="")
    value: Mapped[float] = mapped_column(Float)
    stderr: Mapped[float | None] = mapped_column(Float, nullable=True)
    num_items: Mapped[int] = mapped_column(Integer)


class EvalItemRow(Base):
    __tablename__ = "eval_items"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("eval_runs.id", ondelete="CASCADE"), primary_key=True
    )
    item_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    doc_id: Mapped[str] = mapped_column(String(120))
    subtask: Mapped[str] = mapped_column(String(100), default="")
    scores: Mapped[str] = mapped_column(Text)  # JSON {metric: value}


@dataclass(frozen=True)
class RunSpec:
    """What identifies a run: the model, the backend and the task's settings."""

    model_name: str
    task: str
    num_fewshot: int
    seed: int
    limit: int | None = None
    max_gen_tokens: int | None = None
    model_digest: str = ""
    backend: str = "hearth"
    quant: str = "none"  # the engine's weight mode (--quant): none, auto, int8 or int4

    def __post_init__(self) -> None:
        if not self.model_name:
            raise ValueError("model_name must not be empty")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit must be > 0, got {self.limit}")
        if self.quant not in QUANT_MODES:
            raise ValueError(f"quant must be one of {', '.join(QUANT_MODES)}, got {self.quant!r}")

    @property
    def key(self) -> str:
        fields = asdict(self)
        if self.quant == "none":
            # runs stored before --quant existed keep their key, so --resume still finds them
            del fields["quant"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class RunRecord:
    """A stored run and its aggregated numbers."""

    id: int
    spec: RunSpec
    status: str
    num_items: int
    num_scored: int
    duration_s: float
    hearth_version: str
    samples_path: str | None
    started_at: datetime
    finished_at: datetime | None
    metrics: tuple[MetricResult, ...]

    def metric(self, name: str, subtask: str = "") -> MetricResult | None:
        for m in self.metrics:
            if m.metric == name and m.subtask == subtask:
                return m
        return None


def _add_quant_column(engine: Engine) -> None:
    """Databases made before `quant` existed get the column (every old run was unquantized),
    so their runs stay readable; a no-op once it is there. Safe when two processes race."""
    if "quant" in {c["name"] for c in inspect(engine).get_columns("eval_runs")}:
        return
    try:
        with engine.begin() as conn:
            conn.execute(
                text("ALTER TABLE eval_runs ADD COLUMN quant VARCHAR(10) NOT NULL DEFAULT 'none'")
            )
    except (OperationalError, ProgrammingError):  # another process added it first
        if "quant" not in {c["name"] for c in inspect(engine).get_columns("eval_runs")}:
            raise


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite drops the zone; we store UTC
        return value.replace(tzinfo=UTC)
    return value


class ResultStore:
    """Runs in the database at `db_url` (`Settings.db_url`)."""

    def __init__(self, db_url: str) -> None:
        self.engine = get_engine(db_url)
        tables = [EvalRunRow.__table__, EvalMetricRow.__table__, EvalItemRow.__table__]
        ensure_tables(self.engine, *tables)  # type: ignore[arg-type]
        _add_quant_column(self.engine)

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def start(self, spec: RunSpec, num_items: int, samples_path: str | None = None) -> int:
        """A new run in state `running`; returns its id."""
        with self._session() as s, s.begin():
            row = EvalRunRow(
                run_key=spec.key,
                model_name=spec.model_name,
                model_digest=spec.model_digest,
                backend=spec.backend,
                task=spec.task,
                num_fewshot=spec.num_fewshot,
                limit=spec.limit,
                seed=spec.seed,
                max_gen_tokens=spec.max_gen_tokens,
                quant=spec.quant,
                status=RUNNING,
                num_items=num_items,
                num_scored=0,
                duration_s=0.0,
                hearth_version=__version__,
                samples_path=samples_path,
                started_at=datetime.now(UTC),
            )
            s.add(row)
            s.flush()
            return row.id

    def resumable(self, spec: RunSpec) -> int | None:
        """The latest unfinished run with exactly these settings, if any."""
        with self._session() as s:
            row = s.scalars(
                select(EvalRunRow)
                .where(EvalRunRow.run_key == spec.key, EvalRunRow.status != COMPLETE)
                .order_by(EvalRunRow.id.desc())
            ).first()
            return row.id if row else None

    def reopen(self, run_id: int) -> None:
        with self._session() as s, s.begin():
            row = s.get_one(EvalRunRow, run_id)
            row.status = RUNNING
            row.hearth_version = __version__

    def scored_items(self, run_id: int) -> list[Scored]:
        with self._session() as s:
            rows = s.scalars(
                select(EvalItemRow)
                .where(EvalItemRow.run_id == run_id)
                .order_by(EvalItemRow.item_index)
            ).all()
            return [Scored(r.item_index, r.doc_id, r.subtask, json.loads(r.scores)) for r in rows]

    def add_items(self, run_id: int, scored: Sequence[Scored], elapsed_s: float) -> None:
        """Keep a batch of scored items (one transaction: a Ctrl-C loses at most the batch
        being scored) and add the time it took."""
        with self._session() as s, s.begin():
            for item in scored:
                s.merge(
                    EvalItemRow(
                        run_id=run_id,
                        item_index=item.index,
                        doc_id=item.doc_id,
                        subtask=item.subtask,
                        scores=json.dumps(dict(item.scores)),
                    )
                )
            row = s.get_one(EvalRunRow, run_id)
            row.num_scored = row.num_scored + len(scored)
            row.duration_s = row.duration_s + elapsed_s

    def set_samples_path(self, run_id: int, path: str) -> None:
        with self._session() as s, s.begin():
            s.get_one(EvalRunRow, run_id).samples_path = path

    def set_status(self, run_id: int, status: str) -> None:
        with self._session() as s, s.begin():
            s.get_one(EvalRunRow, run_id).status = status

    def finish(self, run_id: int, results: Sequence[MetricResult]) -> None:
        """Store the aggregated numbers (replacing any) and mark the run complete."""
        with self._session() as s, s.begin():
            s.execute(delete(EvalMetricRow).where(EvalMetricRow.run_id == run_id))
            for r in results:
                s.add(
                    EvalMetricRow(
                        run_id=run_id,
                        metric=r.metric,
                        subtask=r.subtask,
                        value=r.value,
                        stderr=r.stderr,
                        num_items=r.num_items,
                    )
                )
            row = s.get_one(EvalRunRow, run_id)
            row.status = COMPLETE
            row.finished_at = datetime.now(UTC)

    def runs(
        self,
        status: str | None = COMPLETE,
        model_name: str | None = None,
        run_id: int | None = None,
    ) -> list[RunRecord]:
        """Stored runs, oldest first (all statuses with status=None)."""
        with self._session() as s:
            query = select(EvalRunRow).order_by(EvalRunRow.id)
            if run_id is not None:
                query = query.where(EvalRunRow.id == run_id)
            if status is not None:
                query = query.where(EvalRunRow.status == status)
            if model_name is not None:
                query = query.where(EvalRunRow.model_name == model_name)
            rows = s.scalars(query).all()
            by_run: dict[int, list[MetricResult]] = {r.id: [] for r in rows}
            if rows:
                for m in s.scalars(
                    select(EvalMetricRow)
                    .where(EvalMetricRow.run_id.in_(list(by_run)))
                    .order_by(EvalMetricRow.id)
                ):
                    by_run[m.run_id].append(
                        MetricResult(m.metric, m.value, m.stderr, m.num_items, m.subtask)
                    )
            return [self._record(r, by_run[r.id]) for r in rows]

    def get(self, run_id: int) -> RunRecord:
        found = self.runs(status=None, run_id=run_id)
        if not found:
            raise NotFoundError(f"no evaluation run {run_id}; `hearth leaderboard` lists runs")
        return found[0]

    @staticmethod
    def _record(row: EvalRunRow, metrics: list[MetricResult]) -> RunRecord:
        spec = RunSpec(
            model_name=row.model_name,
            task=row.task,
            num_fewshot=row.num_fewshot,
            seed=row.seed,
            limit=row.limit,
            max_gen_tokens=row.max_gen_tokens,
            model_digest=row.model_digest,
            backend=row.backend,
            quant=row.quant,
        )
        started = _utc(row.started_at)
        assert started is not None
        return RunRecord(
            id=row.id,
            spec=spec,
            status=row.status,
            num_items=row.num_items,
            num_scored=row.num_scored,
            duration_s=row.duration_s,
            hearth_version=row.hearth_version,
            samples_path=row.samples_path,
            started_at=started,
            finished_at=_utc(row.finished_at),
            metrics=tuple(metrics),
        )
