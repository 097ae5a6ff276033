"""The `store_models` table (one row per model name) and `ModelRecord`, the facts every
other layer reads about a stored model. The manifest on disk is the source of truth; a
row is a cache of its facts and is rebuilt from the blobs when missing. Knows nothing of
sources or how blobs are written."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hearth.db import Base


class ModelRow(Base):
    __tablename__ = "store_models"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)  # "smollm2:latest"
    digest: Mapped[str] = mapped_column(String(80), index=True)
    format: Mapped[str] = mapped_column(String(8))
    architecture: Mapped[str] = mapped_column(String(80))
    parameter_count: Mapped[int] = mapped_column(BigInteger)
    quantization: Mapped[str] = mapped_column(String(40))
    context_length: Mapped[int | None] = mapped_column(Integer, nullable=True)
    size: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(Text)
    license_id: Mapped[str | None] = mapped_column(String(120), nullable=True)
    license_signals: Mapped[str] = mapped_column(Text, default="[]")  # JSON
    has_chat_template: Mapped[bool] = mapped_column(Boolean)
    chat_template: Mapped[str | None] = mapped_column(Text, nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class ModelRecord:
    """One stored model: its name, digest and model-card facts."""

    name: str
    digest: str
    format: str
    architecture: str
    parameter_count: int
    quantization: str
    context_length: int | None
    size: int
    source: str
    license_id: str | None
    license_signals: str
    has_chat_template: bool
    chat_template: str | None
    created: datetime

    @classmethod
    def from_row(cls, row: ModelRow) -> ModelRecord:
        values = {f: getattr(row, f) for f in cls.__dataclass_fields__}
        if values["created"].tzinfo is None:  # SQLite drops the zone; we store UTC
            values["created"] = values["created"].replace(tzinfo=UTC)
        return cls(**values)

    def to_row(self) -> ModelRow:
        return ModelRow(**{f: getattr(self, f) for f in self.__dataclass_fields__})

    @property
    def kind(self) -> str:
        """generation, embedding or rerank (stored on the architecture: "bert+embedding")."""
        return self.architecture.partition("+")[2] or "generation"

    def summary(self) -> dict[str, object]:
        """The facts as JSON-ready values (what `--json` prints), without the template."""
        return {
            "name": self.name,
            "digest": self.digest,
            "format": self.format,
            "architecture": self.architecture.partition("+")[0],
            "kind": self.kind,
            "parameter_count": self.parameter_count,
            "quantization": self.quantization,
            "context_length": self.context_length,
            "size": self.size,
            "source": self.source,
            "license_id": self.license_id,
            "has_chat_template": self.has_chat_template,
            "created": self.created.isoformat(),
        }
