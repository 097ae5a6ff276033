"""Model names, Ollama-style: `name[:tag]`, where a missing tag means `latest`. Validates
the naming rule in one place so every path built from a name is safe. Knows nothing of
files, sources or the database."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hearth.errors import InvalidNameError

DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 80
_PART = re.compile(r"[a-z0-9][a-z0-9._-]*")
NAME_RULE = (
    "a model name is `name` or `name:tag` (tag defaults to `latest`); name and tag use only "
    "lowercase letters, digits, '.', '_' and '-', start with a letter or digit, contain no "
    f"'/', '..' or spaces, and the whole name is at most {MAX_NAME_LENGTH} characters"
)


@dataclass(frozen=True)
class ModelName:
    """A validated `name:tag`. Build with `ModelName.parse`."""

    name: str
    tag: str = DEFAULT_TAG

    def __post_init__(self) -> None:
        for field_name, part in (("name", self.name), ("tag", self.tag)):
            if not _PART.fullmatch(part) or ".." in part:
                raise InvalidNameError(f"invalid {field_name} {part!r}: {NAME_RULE}")
        if len(str(self)) > MAX_NAME_LENGTH:
            raise InvalidNameError(f"name is {len(str(self))} characters: {NAME_RULE}")

    @classmethod
    def parse(cls, text: str) -> ModelName:
        """`smollm2` -> smollm2:latest. Upper case is folded to lower case, as Ollama does."""
        raw = text.strip().lower()
        if not raw or len(raw) > MAX_NAME_LENGTH:
            raise InvalidNameError(f"invalid model name {text[:40]!r}: {NAME_RULE}")
        if "/" in raw or "\\" in raw or " " in raw:
            raise InvalidNameError(f"invalid model name {text!r}: {NAME_RULE}")
        name, sep, tag = raw.partition(":")
        if sep and ":" in tag:
            raise InvalidNameError(f"invalid model name {text!r} (two ':'): {NAME_RULE}")
        return cls(name, tag if sep else DEFAULT_TAG)

    @classmethod
    def derive(cls, text: str) -> ModelName:
        """A valid name made from free text (a file stem, a package or repo name)."""
        cleaned = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
        cleaned = re.sub(r"\.{2,}", ".", cleaned)[: MAX_NAME_LENGTH - len(DEFAULT_TAG) - 1]
        return cls(cleaned.rstrip("-._") or "model")

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}"
