"""Explicit license acceptances (`--accept-license`): which model (by digest) was accepted
under which license, by whom, when, for which use. A table on hearth.db.Base. Knows
nothing of policies or of how acceptance is decided."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import DateTime, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from hearth.config import Settings
from hearth.db import Base, ensure_tables, session_factory


class AcceptanceRow(Base):
    __tablename__ = "license_acceptances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_digest: Mapped[str] = mapped_column(String(100), index=True)
    license_id: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(200))
    accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    use: Mapped[str] = mapped_column(String(20))


@dataclass(frozen=True)
class Acceptance:
    model_digest: str
    license_id: str
    user: str
    accepted_at: datetime  # UTC
    use: str


def _session(settings: Settings) -> Session:
    sessions = session_factory(settings.db_url)
    ensure_tables(sessions.kw["bind"], AcceptanceRow.__table__)  # type: ignore[arg-type]
    return sessions()


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


def record_acceptance(settings: Settings, model_digest: str, license_id: str, use: str,
                      user: str | None = None) -> Acceptance:
    """Record that `user` (default: the OS user) accepted `license_id` for the model with
    `model_digest`, now."""
    acceptance = Acceptance(model_digest, license_id, user or current_user(),
                            datetime.now(UTC), use)
    with _session(settings) as s, s.begin():
        s.add(AcceptanceRow(model_digest=model_digest, license_id=license_id,
                            user=acceptance.user, accepted_at=acceptance.accepted_at, use=use))
    return acceptance


def list_acceptances(settings: Settings, model_digest: str | None = None) -> list[Acceptance]:
    """Acceptances, oldest first; only those for `model_digest` when given."""
    query = select(AcceptanceRow).order_by(AcceptanceRow.id)
    if model_digest is not None:
        query = query.where(AcceptanceRow.model_digest == model_digest)
    with _session(settings) as s:
        rows = s.scalars(query).all()
    return [
        Acceptance(r.model_digest, r.license_id, r.user,
                   r.accepted_at if r.accepted_at.tzinfo else r.accepted_at.replace(tzinfo=UTC),
                   r.use)
        for r in rows
    ]


def accepted_license_ids(settings: Settings, model_digest: str) -> frozenset[str]:
    return frozenset(a.license_id for a in list_acceptances(settings, model_digest))
