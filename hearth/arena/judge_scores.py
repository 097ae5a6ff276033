"""Single-answer judge scores kept in hearth's database (`judge_scores`): one row per
model, question, turn and judge, with the judgment text; a malformed judgment is stored
with no score, so it is counted, not lost. `hearth compare` reads the means."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import DateTime, Float, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from hearth.db import Base, ensure_tables, get_engine


class JudgeScoreRow(Base):
    __tablename__ = "judge_scores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(200), index=True)
    question_id: Mapped[str] = mapped_column(String(100))
    turn: Mapped[int] = mapped_column(Integer)
    judge: Mapped[str] = mapped_column(String(200))
    score: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: malformed
    judgment: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class JudgeScore:
    model: str
    question_id: str
    turn: int
    judge: str
    score: float | None
    judgment: str


@dataclass(frozen=True)
class MeanScore:
    model: str
    judge: str
    mean: float | None
    num_scored: int
    num_malformed: int


class ScoreStore:
    def __init__(self, db_url: str) -> None:
        self.engine = get_engine(db_url)
        ensure_tables(self.engine, JudgeScoreRow.__table__)  # type: ignore[arg-type]

    def add(self, score: JudgeScore) -> None:
        row = JudgeScoreRow(
            model=score.model,
            question_id=score.question_id,
            turn=score.turn,
            judge=score.judge,
            score=score.score,
            judgment=score.judgment,
            created_at=datetime.now(UTC),
        )
        with Session(self.engine) as s, s.begin():
            s.add(row)

    def means(self, model: str) -> list[MeanScore]:
        """The model's mean score per judge (malformed judgments counted apart)."""
        query = (
            select(
                JudgeScoreRow.judge,
                func.avg(JudgeScoreRow.score),
                func.count(JudgeScoreRow.score),
                func.count(),
            )
            .where(JudgeScoreRow.model == model)
            .group_by(JudgeScoreRow.judge)
        )
        with Session(self.engine) as s:
            return [
                MeanScore(model, judge, None if avg is None else float(avg), n, total - n)
                for judge, avg, n, total in s.execute(query)
            ]
