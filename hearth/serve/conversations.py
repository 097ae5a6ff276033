"""Chat conversations kept server-side (table `serve_conversations`) so they survive a
browser change: title, model, system prompt, sampling parameters and the messages (each
with the answer's measured stats), listed newest first, searched by title and text,
exported as JSON or Markdown. Each belongs to the API key that made it (None when auth is
off) and only that key sees it. Knows nothing of HTTP."""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, String, Text, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from hearth.config import Settings
from hearth.db import Base, ensure_tables, get_engine, session_factory
from hearth.errors import NotFoundError


class ConversationRow(Base):
    __tablename__ = "serve_conversations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    title: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200))
    system: Mapped[str] = mapped_column(Text)
    params: Mapped[str] = mapped_column(Text)  # JSON object
    messages: Mapped[str] = mapped_column(Text)  # JSON list of {role, content, stats?}
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


@dataclass(frozen=True)
class Conversation:
    id: str
    title: str
    model: str
    system: str
    params: dict[str, Any]
    messages: list[dict[str, Any]]
    created: datetime
    updated: datetime

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "model": self.model,
            "updated": self.updated.isoformat(),
            "num_messages": len(self.messages),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "system": self.system,
            "params": self.params,
            "messages": self.messages,
            "created": self.created.isoformat(),
        }

    def to_markdown(self) -> str:
        lines = [f"# {self.title}", "", f"Model: `{self.model}`", ""]
        if self.system:
            lines += ["## System", "", self.system, ""]
        for m in self.messages:
            lines += [
                f"## {str(m.get('role', '')).capitalize()}",
                "",
                str(m.get("content", "")),
                "",
            ]
        return "\n".join(lines)


_TABLES_LOCK = threading.Lock()  # first requests in worker threads at once: one CREATE


def _session(settings: Settings) -> Session:
    with _TABLES_LOCK:
        ensure_tables(get_engine(settings.db_url), ConversationRow.__table__)  # type: ignore[arg-type]
    return session_factory(settings.db_url)()


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite drops the zone


def _conversation(row: ConversationRow) -> Conversation:
    return Conversation(
        row.id, row.title, row.model, row.system, json.loads(row.params),
        json.loads(row.messages), _utc(row.created), _utc(row.updated),
    )  # fmt: skip


def _owned(s: Session, key: str | None, conversation_id: str) -> ConversationRow:
    row = s.get(ConversationRow, conversation_id)
    if row is None or row.key != key:  # another key's conversation is not there for this one
        raise NotFoundError(f"no conversation {conversation_id!r}; the list shows yours")
    return row


def create_conversation(settings: Settings, key: str | None, **fields: Any) -> Conversation:
    now = datetime.now(UTC)
    row = ConversationRow(
        id=secrets.token_hex(8),
        key=key,
        title=fields.get("title") or "New chat",
        model=fields.get("model") or "",
        system=fields.get("system") or "",
        params=json.dumps(fields.get("params") or {}),
        messages=json.dumps(fields.get("messages") or [], ensure_ascii=False),
        created=now,
        updated=now,
    )
    with _session(settings) as s, s.begin():
        s.add(row)
    return _conversation(row)


def update_conversation(
    settings: Settings, key: str | None, conversation_id: str, **fields: Any
) -> Conversation:
    """Replace the given fields (None: keep); messages are replaced as a whole."""
    with _session(settings) as s, s.begin():
        row = _owned(s, key, conversation_id)
        for name in ("title", "model", "system"):
            if fields.get(name) is not None:
                setattr(row, name, fields[name])
        if fields.get("params") is not None:
            row.params = json.dumps(fields["params"])
        if fields.get("messages") is not None:
            row.messages = json.dumps(fields["messages"], ensure_ascii=False)
        row.updated = datetime.now(UTC)
        return _conversation(row)


def get_conversation(settings: Settings, key: str | None, conversation_id: str) -> Conversation:
    with _session(settings) as s:
        return _conversation(_owned(s, key, conversation_id))


def delete_conversation(settings: Settings, key: str | None, conversation_id: str) -> None:
    with _session(settings) as s, s.begin():
        s.delete(_owned(s, key, conversation_id))


def list_conversations(
    settings: Settings, key: str | None, search: str = "", limit: int = 200
) -> list[Conversation]:
    """This key's conversations, newest first; `search` matches the title or any message."""
    query = select(ConversationRow).where(
        ConversationRow.key.is_(None) if key is None else ConversationRow.key == key
    )
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(
                ConversationRow.title.ilike(pattern, escape="\\"),
                ConversationRow.messages.ilike(pattern, escape="\\"),
            )
        )
    query = query.order_by(ConversationRow.updated.desc()).limit(limit)
    with _session(settings) as s:
        return [_conversation(r) for r in s.scalars(query)]
