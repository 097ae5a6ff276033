"""`hearth compare`: one row per model with what hearth knows of it: leaderboard eval
scores (stored `hearth eval` runs), arena rating with its 95% interval, judge score, speed
on this machine (decode tokens/s, TTFT), the cost of a million generated tokens here (from
the measured rate, the machine's power draw and the electricity price), next to a hosted-API
price table, and the license with its commercial-use verdict. compare_render.py prints it.

Reads the store, the database and (for speed) the engine; knows nothing of the CLI."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from hearth.arena.battles import BattleStore
from hearth.arena.judge_scores import ScoreStore
from hearth.arena.ratings import Rating, leaderboard
from hearth.arena.speed import Speed
from hearth.errors import UserInputError


@dataclass(frozen=True)
class CostModel:
    """This machine's running cost: `watts` drawn while generating (the whole box, at the
    wall), `kwh_price` in USD. Both are the user's to set; the defaults are a mid-range
    desktop and a typical European household tariff."""

    watts: float = 65.0
    kwh_price: float = 0.30

    def __post_init__(self) -> None:
        if self.watts <= 0 or self.kwh_price < 0:
            raise ValueError("watts must be > 0 and kwh_price >= 0")

    def per_million_tokens(self, tokens_per_s: float) -> float | None:
        if tokens_per_s <= 0:
            return None
        hours = 1e6 / tokens_per_s / 3600.0
        return self.watts / 1000.0 * hours * self.kwh_price


@dataclass(frozen=True)
class ApiPrice:
    provider: str
    model: str
    input_per_mtok: float
    output_per_mtok: float
    source: str
    as_of: str


@dataclass
class ModelReport:
    model: str
    eval_scores: dict[str, float | None] = field(default_factory=dict)  # task -> percent
    eval_average: float | None = None
    arena: Rating | None = None
    judge_score: float | None = None
    judge: str | None = None
    judge_count: int = 0
    speed: Speed | None = None
    cost_per_mtok: float | None = None
    license_id: str = "unknown"
    license_name: str = ""
    commercial_use: str = "unknown"  # the license: yes / conditional / no / unknown
    policy_verdict: str = ""  # under this organisation's policy.toml, for serving

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "eval": {"scores": self.eval_scores, "average": self.eval_average},
            "arena": None if self.arena is None else self.arena.as_dict(),
            "judge": {
                "score": self.judge_score,
                "judge": self.judge,
                "num_scored": self.judge_count,
            },
            "speed": None
            if self.speed is None
            else {
                "decode_tokens_per_s": round(self.speed.decode_tokens_per_s, 2),
                "ttft_s": round(self.speed.ttft_s, 4),
            },
            "cost_per_mtok_usd": None
            if self.cost_per_mtok is None
            else round(self.cost_per_mtok, 4),
            "license": {
                "id": self.license_id,
                "name": self.license_name,
                "commercial_use": self.commercial_use,
                "policy": self.policy_verdict,
            },
        }


def load_prices(path: Path | None = None) -> list[ApiPrice]:
    """The hosted-API price table: `path`, or the one shipped with hearth."""
    if path is None:
        text = resources.files("hearth.arena").joinpath("api_prices.toml").read_text("utf-8")
        where = "hearth's price table"
    else:
        if not path.is_file():
            raise UserInputError(f"no such price table: {path}")
        text, where = path.read_text(encoding="utf-8"), str(path)
    try:
        rows = tomllib.loads(text).get("price", [])
        return [ApiPrice(**row) for row in rows]
    except (tomllib.TOMLDecodeError, TypeError) as exc:
        raise UserInputError(
            f"{where}: each [[price]] needs provider, model, input_per_mtok, "
            f"output_per_mtok, source, as_of ({exc})"
        ) from exc


def _license(report: ModelReport, record: Any, settings: Any) -> None:
    from hearth.errors import PolicyError
    from hearth.licenses import check_use, detection_from_stored, get_facts, load_policy

    detection = detection_from_stored(record.license_id, record.license_signals)
    facts = get_facts(detection.license_id)
    report.license_id, report.license_name = detection.license_id, facts.name
    report.commercial_use = facts.commercial_use
    try:
        check_use(detection, load_policy(settings), "serve")
        report.policy_verdict = "allowed"
    except PolicyError as exc:
        report.policy_verdict = f"refused: {exc}"


def _evals(report: ModelReport, db_url: str) -> None:
    from hearth.eval.leaderboard import leaderboard_rows
    from hearth.eval.results import ResultStore

    rows = leaderboard_rows(ResultStore(db_url).runs(model_name=report.model))
    plain = [r for r in rows if r.quant == "none"] or rows
    if plain:
        report.eval_scores, report.eval_average = dict(plain[0].scores), plain[0].average


def gather(
    models: Sequence[str],
    settings: Any,
    cost: CostModel,
    measure: Callable[[str], Speed] | None = None,
) -> list[ModelReport]:
    """The reports, in the order given. `measure`: model name -> its speed here (None skips
    the measurement; speed and cost are then left out)."""
    from hearth.store.store import Store

    store = Store(settings)
    records = [store.get(m) for m in models]  # ModelNotFoundError before any work
    names = [r.name for r in records]
    if len(set(names)) != len(names):
        raise UserInputError("a model is named twice")
    board = {
        r.model: r for r in leaderboard(BattleStore(settings.db_url).rated(judged=False)).ratings
    }
    scores = ScoreStore(settings.db_url)
    reports = []
    for name, record in zip(names, records, strict=True):
        report = ModelReport(name, arena=board.get(name))
        _evals(report, settings.db_url)
        means = sorted(scores.means(name), key=lambda m: -m.num_scored)
        if means:
            report.judge_score, report.judge, report.judge_count = (
                means[0].mean,
                means[0].judge,
                means[0].num_scored,
            )
        _license(report, record, settings)
        if measure is not None:
            report.speed = measure(name)
            report.cost_per_mtok = cost.per_million_tokens(report.speed.decode_tokens_per_s)
        reports.append(report)
    return reports
