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
        f"get the evaluation data into {root}: `hearth data pull leaderboard` downloads "
        f"it from the Hugging Face Hub (`--from DIR` copies a data folder, offline), or "
        f"point --data-dir / {ENV_VAR} at one (layout: <task>/<split>.jsonl)"
    )


# The files the leaderboard tasks read (hearth/eval/tasks/*: eval_file, fewshot_file), in
# the layout of the offline data set whose sources and licenses its README.md documents.
LEADERBOARD_FILES: tuple[str, ...] = (
    "arc_challenge/test.jsonl",
    "arc_challenge/train.jsonl",
    "hellaswag/validation.jsonl",
    "hellaswag/train_fewshot_pool.jsonl",
    "mmlu/test.jsonl",
    "mmlu/dev.jsonl",
    "truthfulqa/mc.jsonl",
    "winogrande/validation.jsonl",
    "winogrande/train_fewshot_pool.jsonl",
    "gsm8k/test.jsonl",
    "gsm8k/train.jsonl",
)
_DOCS = ("README.md", "MANIFEST.json")  # copied along when present: sources and licenses


def copy_data(source: Path, dest: Path, files: Iterable[str] = LEADERBOARD_FILES) -> list[Path]:
    """Copy the evaluation data files from a folder (a copy of the data set, e.g. carried
    to an offline machine) into `dest` in the same layout; every file is checked (JSON
    Lines of objects) before anything is written, and each is written to a temporary name
    and renamed, so an interrupted copy never leaves a half file. Returns the written paths."""
    import shutil

    wanted = list(files)
    if not source.is_dir():
        raise NotFoundError(f"{source} is not a folder; give the folder that holds {wanted[0]}")
    missing = [f for f in wanted if not (source / f).is_file()]
    if missing:
        raise NotFoundError(
            f"{source} lacks {', '.join(missing)}; give a folder in the layout "
            "<task>/<split>.jsonl (hearth's eval data)"
        )
    if source.resolve() == dest.resolve():
        raise UserInputError(f"{source} is already the data folder; nothing to copy")
    for f in wanted:
        read_jsonl(source, f)  # refuses a corrupt file before anything is copied
    written = []
    for f in [*wanted, *(d for d in _DOCS if (source / d).is_file())]:
        target = dest / f
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        shutil.copyfile(source / f, tmp)
        tmp.replace(target)
        written.append(target)
    return written


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
