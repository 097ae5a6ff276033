"""Where the evaluation data lives and how one file of it is read: JSON Lines, one
document per line, checked for the fields a task needs. A missing or unreadable file is
an error that names it and says how to point hearth at the data.

Knows nothing of prompts or models; the tasks say which files and fields they need."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hearth.config import Settings
from hearth.errors import NotFoundError, UserInputError

ENV_VAR = "HEARTH_EVAL_DATA"  # declared in hearth.config (Settings.eval_data)


def resolve_data_dir(explicit: str | Path | None, settings: Settings) -> Path:
    """`--data-dir` if given, else $HEARTH_EVAL_DATA / config.toml `eval_data`, else
    `<HEARTH_HOME>/eval-data` (Settings.eval_data_dir)."""
    if explicit:
        return Path(explicit).expanduser()
    return settings.eval_data_dir


def _hint(root: Path) -> str:
    return (
        f"put the evaluation data under {root} (layout: <task>/<split>.jsonl), "
        f"or point --data-dir / {ENV_VAR} at it"
    )


def read_jsonl(root: Path, relpath: str, required: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The documents of `root/relpath`, each a JSON object with every `required` key."""
    path = root / relpath
    if not path.is_file():
        raise NotFoundError(f"evaluation data file {path} not found; {_hint(root)}")
    need = tuple(required)
    docs: list[dict[str, Any]] = []
    try:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserInputError(
                        f"evaluation data file {path} is corrupt: line {lineno} is not JSON "
                        f"({exc.msg}); restore the file from its source"
                    ) from exc
                if not isinstance(doc, dict):
                    raise UserInputError(
                        f"evaluation data file {path} is corrupt: line {lineno} is not a "
                        "JSON object; restore the file from its source"
                    )
                missing = [k for k in need if k not in doc]
                if missing:
                    raise UserInputError(
                        f"evaluation data file {path} is corrupt: line {lineno} lacks "
                        f"{', '.join(missing)}; restore the file from its source"
                    )
                docs.append(doc)
    except UnicodeDecodeError as exc:
        raise UserInputError(
            f"evaluation data file {path} is corrupt: not UTF-8 text; restore it from its source"
        ) from exc
    except OSError as exc:
        raise UserInputError(f"evaluation data file {path} cannot be read: {exc}") from exc
    if not docs:
        raise UserInputError(f"evaluation data file {path} is empty; restore it from its source")
    return docs
