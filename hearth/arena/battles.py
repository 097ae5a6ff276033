"""Battles kept in hearth's database (`arena_battles`): the prompt, both conversations, the
two models, the vote (model_a / model_b / tie / tie (bothbad): both-bad stays distinct from
a tie), who voted (a person's name, or `judge` for a model that judged), when, and whether
the battle was still blind at vote time. An answer that names a model (identity.py) marks
the battle as leaked: it is kept, never rated.

Knows nothing of engines or HTTP; tables live on `hearth.db.Base`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Integer, String, Text, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from hearth.arena.identity import find_leak
from hearth.arena.ratings import WINNERS, Outcome
from hearth.db import Base, ensure_tables, get_engine
from hearth.errors import ConflictError, NotFoundError

Message = dict[str, str]
SOURCES = ("arena", "judge", "import")


class BattleRow(Base):
    __tablename__ = "arena_battles"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    source: Mapped[str] = mapped_column(String(10))  # arena (a person), judge, import
    model_a: Mapped[str] = mapped_column(String(200), index=True)
    model_b: Mapped[str] = mapped_column(String(200), index=True)
    prompt: Mapped[str] = mapped_column(Text)  # the first user turn
    conversation_a: Mapped[str] = mapped_column(Text, default="[]")  # JSON [{role, content}]
    conversation_b: Mapped[str] = mapped_column(Text, default="[]")
    conv_metadata: Mapped[str] = mapped_column(Text, default="{}")  # style features (style.py)
    question_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    answers_done: Mapped[bool] = mapped_column(Boolean, default=False)
    winner: Mapped[str | None] = mapped_column(String(20), nullable=True)
    voter: Mapped[str] = mapped_column(String(200), default="")
    judge: Mapped[str | None] = mapped_column(String(200), nullable=True)
    anony: Mapped[bool] = mapped_column(Boolean, default=True)  # blind when the vote came
    leak: Mapped[str | None] = mapped_column(String(100), nullable=True)  # the word that leaked
    num_turns: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    voted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class Battle:
    id: str
    source: str
    model_a: str
    model_b: str
    prompt: str
    conversation_a: list[Message]
    conversation_b: list[Message]
    conv_metadata: dict[str, Any]
    question_id: str | None
    answers_done: bool
    winner: str | None
    voter: str
    judge: str | None
    anony: bool
    leak: str | None
    num_turns: int
    created_at: datetime
    voted_at: datetime | None

    @property
    def rated(self) -> bool:
        """Counted in the leaderboard: voted, blind at vote time, no identity leak."""
        return self.winner is not None and self.anony and self.leak is None

    def outcome(self) -> Outcome:
        assert self.winner is not None
        return Outcome(self.model_a, self.model_b, self.winner, self.conv_metadata or None)


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite drops the zone; we store UTC
        return value.replace(tzinfo=UTC)
    return value


def _battle(row: BattleRow) -> Battle:
    return Battle(
        id=row.id,
        source=row.source,
        model_a=row.model_a,
        model_b=row.model_b,
        prompt=row.prompt,
        conversation_a=json.loads(row.conversation_a),
        conversation_b=json.loads(row.conversation_b),
        conv_metadata=json.loads(row.conv_metadata),
        question_id=row.question_id,
        answers_done=row.answers_done,
        winner=row.winner,
        voter=row.voter,
        judge=row.judge,
        anony=row.anony,
        leak=row.leak,
        num_turns=row.num_turns,
        created_at=_utc(row.created_at) or datetime.now(UTC),
        voted_at=_utc(row.voted_at),
    )


def _assistant_text(conversation: Sequence[Message]) -> list[str]:
    return [m.get("content", "") for m in conversation if m.get("role") == "assistant"]


@dataclass(frozen=True)
class NewBattle:
    """A battle to store as it is (an import, a judged pair)."""

    model_a: str
    model_b: str
    winner: str | None
    conversation_a: list[Message]
    conversation_b: list[Message]
    source: str = "import"
    voter: str = ""
    judge: str | None = None
    anony: bool = True
    question_id: str | None = None
    conv_metadata: dict[str, Any] | None = None
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.winner is not None and self.winner not in WINNERS:
            raise ValueError(f"winner must be one of {', '.join(WINNERS)}, got {self.winner!r}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}")
        if self.model_a == self.model_b:
            raise ValueError(f"a battle needs two different models, got {self.model_a!r} twice")


class BattleStore:
    """Battles in the database at `db_url` (`Settings.db_url`)."""

    def __init__(self, db_url: str) -> None:
        self.engine = get_engine(db_url)
        ensure_tables(self.engine, BattleRow.__table__)  # type: ignore[arg-type]

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # -- writing ---------------------------------------------------------------------------
    def start(self, model_a: str, model_b: str, prompt: str, source: str = "arena") -> str:
        """A battle whose answers are still being written; returns its id."""
        if model_a == model_b:
            raise ValueError("a battle needs two different models")
        row = BattleRow(
            id=uuid.uuid4().hex,
            source=source,
            model_a=model_a,
            model_b=model_b,
            prompt=prompt,
            conversation_a=json.dumps([{"role": "user", "content": prompt}]),
            conversation_b=json.dumps([{"role": "user", "content": prompt}]),
            created_at=datetime.now(UTC),
        )
        with self._session() as s, s.begin():
            s.add(row)
        return row.id

    def finish_turn(
        self,
        battle_id: str,
        conversation_a: list[Message],
        conversation_b: list[Message],
        conv_metadata: dict[str, Any],
    ) -> Battle:
        """Both answers of the latest turn are complete: store the conversations, look for
        an identity leak, and let the battle be voted on."""
        with self._session() as s, s.begin():
            row = self._get(s, battle_id)
            if row.winner is not None:
                raise ConflictError(f"battle {battle_id} was already voted on")
            row.conversation_a = json.dumps(conversation_a)
            row.conversation_b = json.dumps(conversation_b)
            row.conv_metadata = json.dumps(conv_metadata)
            row.num_turns = sum(1 for m in conversation_a if m.get("role") == "user")
            row.leak = find_leak(
                _assistant_text(conversation_a) + _assistant_text(conversation_b),
                (row.model_a, row.model_b),
            )
            row.answers_done = True
            return _battle(row)

    def reopen(self, battle_id: str, prompt: str) -> Battle:
        """A further turn (multi-turn continues the same pair): not votable until its
        answers are in."""
        with self._session() as s, s.begin():
            row = self._get(s, battle_id)
            if row.winner is not None:
                raise ConflictError(
                    f"battle {battle_id} was already voted on; start a new battle to go on"
                )
            if not row.answers_done:
                raise ConflictError(f"battle {battle_id} is still answering the last turn")
            row.answers_done = False
            return _battle(row)

    def vote(self, battle_id: str, winner: str, voter: str = "", anony: bool = True) -> Battle:
        """Record the vote. NotFoundError for an unknown id, ConflictError for a second vote
        or a vote before both answers are complete."""
        if winner not in WINNERS:
            raise ValueError(f"winner must be one of {', '.join(WINNERS)}, got {winner!r}")
        with self._session() as s, s.begin():
            row = self._get(s, battle_id, lock=True)
            if row.winner is not None:
                raise ConflictError(f"battle {battle_id} was already voted on ({row.winner})")
            if not row.answers_done:
                raise ConflictError(
                    f"battle {battle_id} is still answering; vote when both answers are complete"
                )
            row.winner = winner
            row.voter = voter
            row.anony = anony
            row.voted_at = datetime.now(UTC)
            return _battle(row)

    def add_many(self, battles: Iterable[NewBattle]) -> int:
        """Store finished battles in one transaction (all or nothing); returns the count.
        One bulk INSERT rather than ORM objects: imports run to millions of rows."""
        now = datetime.now(UTC)
        rows = []
        for b in battles:
            prompt = next((m["content"] for m in b.conversation_a if m["role"] == "user"), "")
            answers = _assistant_text(b.conversation_a) + _assistant_text(b.conversation_b)
            rows.append(
                {
                    "id": uuid.uuid4().hex,
                    "source": b.source,
                    "model_a": b.model_a,
                    "model_b": b.model_b,
                    "prompt": prompt,
                    "conversation_a": json.dumps(b.conversation_a),
                    "conversation_b": json.dumps(b.conversation_b),
                    "conv_metadata": json.dumps(b.conv_metadata or {}),
                    "question_id": b.question_id,
                    "answers_done": True,
                    "winner": b.winner,
                    "voter": b.voter,
                    "judge": b.judge,
                    "anony": b.anony,
                    "leak": find_leak(answers, (b.model_a, b.model_b)),
                    "num_turns": max(1, sum(1 for m in b.conversation_a if m["role"] == "user")),
                    "created_at": b.created_at or now,
                    "voted_at": (b.created_at or now) if b.winner else None,
                }
            )
        if rows:
            with self._session() as s, s.begin():
                s.execute(insert(BattleRow), rows)
        return len(rows)

    # -- reading ---------------------------------------------------------------------------
    @staticmethod
    def _get(s: Session, battle_id: str, lock: bool = False) -> BattleRow:
        query = select(BattleRow).where(BattleRow.id == battle_id)
        if lock:
            query = query.with_for_update()  # PostgreSQL: two votes at once, one wins
        row = s.scalars(query).first()
        if row is None:
            raise NotFoundError(f"no arena battle with id {battle_id!r}")
        return row

    def get(self, battle_id: str) -> Battle:
        with self._session() as s:
            return _battle(self._get(s, battle_id))

    def all(self, source: str | None = None, judge: str | None = None) -> list[Battle]:
        """Every battle, oldest first; `source` / `judge` narrow it."""
        query = select(BattleRow).order_by(BattleRow.created_at, BattleRow.id)
        if source is not None:
            query = query.where(BattleRow.source == source)
        if judge is not None:
            query = query.where(BattleRow.judge == judge)
        with self._session() as s:
            return [_battle(r) for r in s.scalars(query)]

    def rated(self, judged: bool | None = None) -> list[Outcome]:
        """The battles the leaderboard counts (voted, blind, no leak), oldest first.
        `judged`: True only a judge's, False only people's, None both. Reads only the
        columns the ratings need: an import of Chatbot Arena's logs is millions of rows."""
        cols = (BattleRow.model_a, BattleRow.model_b, BattleRow.winner, BattleRow.conv_metadata)
        query = (
            select(*cols)
            .where(
                BattleRow.winner.is_not(None), BattleRow.anony.is_(True), BattleRow.leak.is_(None)
            )
            .order_by(BattleRow.created_at, BattleRow.id)
        )
        if judged is True:
            query = query.where(BattleRow.judge.is_not(None))
        elif judged is False:
            query = query.where(BattleRow.judge.is_(None))
        with self._session() as s:
            return [
                Outcome(a, b, str(w), (json.loads(meta) if meta and meta != "{}" else None))
                for a, b, w, meta in s.execute(query)
            ]
