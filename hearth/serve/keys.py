"""API keys: created with a random secret shown once, stored only as a SHA-256 hash (the
secret has 256 random bits, so a plain hash cannot be brute-forced and lookup stays one
indexed query), listed by name and prefix, revoked by name. Table `serve_api_keys`.
Knows nothing of HTTP."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import DateTime, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from hearth.config import Settings
from hearth.db import Base, ensure_tables, get_engine, session_factory
from hearth.errors import NotFoundError, UserInputError

PREFIX = "hth_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ApiKeyRow(Base):
    __tablename__ = "serve_api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, to recognise a key
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class ApiKey:
    name: str
    prefix: str
    created: datetime
    revoked: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked is None

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "prefix": self.prefix,
            "created": self.created.isoformat(),
            "revoked": self.revoked.isoformat() if self.revoked else None,
        }


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# requests check keys in worker threads; two first requests at once would both see no
# table and both CREATE it (sqlite3 "table serve_api_keys already exists"): one at a time
_TABLES_LOCK = threading.Lock()


def _session(settings: Settings) -> Session:
    with _TABLES_LOCK:
        ensure_tables(get_engine(settings.db_url), ApiKeyRow.__table__)  # type: ignore[arg-type]
    return session_factory(settings.db_url)()


def _key(row: ApiKeyRow) -> ApiKey:
    def utc(value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:  # SQLite drops the zone; we store UTC
            return value.replace(tzinfo=UTC)
        return value

    created = utc(row.created)
    assert created is not None
    return ApiKey(row.name, row.prefix, created, utc(row.revoked))


def create_key(settings: Settings, name: str) -> tuple[ApiKey, str]:
    """A new active key named `name`; returns it and its secret (shown once, never stored)."""
    if not _NAME.fullmatch(name):
        raise UserInputError(
            f"invalid key name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    with _session(settings) as s, s.begin():
        taken = s.scalar(
            select(ApiKeyRow).where(ApiKeyRow.name == name, ApiKeyRow.revoked.is_(None))
        )
        if taken is not None:
            raise UserInputError(
                f"an active key named {name!r} exists; revoke it first "
                f"(`hearth keys revoke {name}`) or choose another name"
            )
        secret = PREFIX + secrets.token_urlsafe(32)
        row = ApiKeyRow(
            name=name, prefix=secret[:10], hash=hash_secret(secret), created=datetime.now(UTC)
        )
        s.add(row)
        s.flush()
        return _key(row), secret


def list_keys(settings: Settings, include_revoked: bool = True) -> list[ApiKey]:
    with _session(settings) as s:
        rows = s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id)).all()
        keys = [_key(r) for r in rows]
    return [k for k in keys if include_revoked or k.active]


def revoke_key(settings: Settings, name: str) -> ApiKey:
    """Revoke the active key named `name` (requests with it get 401 from then on)."""
    with _session(settings) as s, s.begin():
        row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.name == name, ApiKeyRow.revoked.is_(None)))
        if row is None:
            raise NotFoundError(f"no active key named {name!r}; `hearth keys list` shows them")
        row.revoked = datetime.now(UTC)
        return _key(row)


def has_active_keys(settings: Settings) -> bool:
    with _session(settings) as s:
        return (
            s.scalar(select(ApiKeyRow.id).where(ApiKeyRow.revoked.is_(None)).limit(1)) is not None
        )


def verify_key(settings: Settings, secret: str) -> ApiKey | None:
    """The active key whose secret this is, else None (unknown or revoked)."""
    digest = hash_secret(secret)
    with _session(settings) as s:
        row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.hash == digest))
        if row is None or row.revoked is not None:
            return None
        # the hash matched an indexed lookup; compare again in constant time for good measure
        if not secrets.compare_digest(row.hash, digest):
            return None
        return _key(row)
