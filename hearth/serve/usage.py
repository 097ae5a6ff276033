"""The usage ledger: one row per model request the server answered (time, key, model,
prompt and output tokens, TTFT, duration, CPU-seconds, an energy estimate), table
`serve_usage`, and the summaries `hearth usage` and `GET /api/usage` print, with what the
same tokens would have cost on hosted APIs (pricing.py). Rows are written by the server's
`UsageLedgerMiddleware` (usage_meter.py). Knows nothing of HTTP."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, Float, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from hearth.config import Settings
from hearth.db import Base, ensure_tables, get_engine, session_factory
from hearth.errors import UserInputError
from hearth.serve.pricing import PriceTable

GROUPINGS = ("model", "key", "day")


class UsageRow(Base):
    __tablename__ = "serve_usage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    request_id: Mapped[str] = mapped_column(String(32))
    key: Mapped[str | None] = mapped_column(String(64), nullable=True)  # None: auth off
    model: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(String(200))
    status: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    ttft_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    duration_s: Mapped[float] = mapped_column(Float)
    cpu_s: Mapped[float] = mapped_column(Float)
    energy_wh: Mapped[float] = mapped_column(Float)


@dataclass(frozen=True)
class UsageRecord:
    """One request, as recorded (and as `recent` returns it)."""

    time: datetime
    request_id: str
    key: str | None
    model: str
    path: str
    status: int
    prompt_tokens: int
    output_tokens: int
    ttft_s: float | None
    duration_s: float
    cpu_s: float
    energy_wh: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "time": self.time.isoformat()}


@dataclass
class UsageTotals:
    requests: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    duration_s: float = 0.0
    cpu_s: float = 0.0
    energy_wh: float = 0.0
    ttfts: list[float] = field(default_factory=list)

    def add(self, r: UsageRecord) -> None:
        self.requests += 1
        self.prompt_tokens += r.prompt_tokens
        self.output_tokens += r.output_tokens
        self.duration_s += r.duration_s
        self.cpu_s += r.cpu_s
        self.energy_wh += r.energy_wh
        if r.ttft_s is not None:
            self.ttfts.append(r.ttft_s)

    def to_dict(self, prices: PriceTable) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "duration_s": round(self.duration_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "energy_wh": round(self.energy_wh, 4),
            "mean_ttft_s": round(sum(self.ttfts) / len(self.ttfts), 4) if self.ttfts else None,
            "hosted_cost_usd": prices.costs(self.prompt_tokens, self.output_tokens),
        }


# a server's first requests run in worker threads at once: create the table one at a time
_TABLES_LOCK = threading.Lock()


def _session(settings: Settings) -> Session:
    with _TABLES_LOCK:
        ensure_tables(get_engine(settings.db_url), UsageRow.__table__)  # type: ignore[arg-type]
    return session_factory(settings.db_url)()


def record_usage(settings: Settings, record: UsageRecord) -> None:
    with _session(settings) as s, s.begin():
        s.add(UsageRow(**asdict(record)))


def _record(row: UsageRow) -> UsageRecord:
    when = row.time if row.time.tzinfo else row.time.replace(tzinfo=UTC)  # SQLite drops it
    return UsageRecord(
        when, row.request_id, row.key, row.model, row.path, row.status, row.prompt_tokens,
        row.output_tokens, row.ttft_s, row.duration_s, row.cpu_s, row.energy_wh,
    )  # fmt: skip


def usage_records(settings: Settings, since: datetime | None = None) -> list[UsageRecord]:
    """Every recorded request since `since` (all when None), oldest first."""
    query = select(UsageRow).order_by(UsageRow.id)
    if since is not None:
        query = query.where(UsageRow.time >= since)
    with _session(settings) as s:
        return [_record(r) for r in s.scalars(query)]


_SPAN = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """`7d`, `24h`, `30m`, `2w`, or an ISO date/time (UTC when no zone is given)."""
    if not text:
        return None
    now = now or datetime.now(UTC)
    span = _SPAN.fullmatch(text.strip().lower())
    if span:
        return now - timedelta(seconds=float(span.group(1)) * _UNIT_S[span.group(2)])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserInputError(
            f"invalid --since {text!r}: use a span such as 24h, 7d, 2w or a date such as 2026-12-01"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _group_key(r: UsageRecord, by: str) -> str:
    if by == "model":
        return r.model
    if by == "key":
        return r.key or "(no key)"
    return r.time.astimezone(UTC).strftime("%Y-%m-%d")


def summarize(
    records: Iterable[UsageRecord], prices: PriceTable, by: str | None = None
) -> dict[str, Any]:
    """Totals over `records`, and per model, key or UTC day when `by` says so."""
    if by is not None and by not in GROUPINGS:
        raise UserInputError(f"invalid grouping {by!r}: use one of {', '.join(GROUPINGS)}")
    total = UsageTotals()
    groups: dict[str, UsageTotals] = {}
    for r in records:
        total.add(r)
        if by is not None:
            groups.setdefault(_group_key(r, by), UsageTotals()).add(r)
    return {
        "by": by,
        "totals": total.to_dict(prices),
        "groups": [{"group": k, **v.to_dict(prices)} for k, v in sorted(groups.items())],
        "prices": prices.to_dict(),
    }
