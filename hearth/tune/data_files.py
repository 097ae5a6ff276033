"""Read training rows from the files people have: JSON Lines / a JSON array, CSV, Parquet,
plain text, and a Hugging Face `datasets` folder (`save_to_disk`). Each row keeps where it
came from ("notes.jsonl:17") so a bad row is named by file and line. Knows nothing of
formats' meaning (examples.py) or of tokens."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.errors import OptionalDependencyError, UserInputError

__all__ = ["Row", "read_rows"]

_SUFFIXES = ".jsonl, .json, .csv, .parquet, .txt or a datasets folder"


@dataclass(frozen=True)
class Row:
    """One record: its fields as read, and where it is ("file:line" or "file:row N")."""

    fields: dict[str, Any]
    source: str


def read_rows(path: str | Path) -> list[Row]:
    """Every row of `path`. Raises UserInputError naming the file and line of a row that
    cannot be parsed, or a path that is no data hearth reads."""
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"no data at {path}; give a {_SUFFIXES}")
    if path.is_dir():
        return list(_datasets_folder(path))
    suffix = path.suffix.lower()
    readers = {
        ".jsonl": _json_lines,
        ".ndjson": _json_lines,
        ".json": _json_file,
        ".csv": _csv,
        ".parquet": _parquet,
        ".txt": _text,
        ".md": _text,
    }
    if suffix not in readers:
        raise UserInputError(
            f"{path}: hearth does not read {suffix or 'files without a suffix'}; give a {_SUFFIXES}"
        )
    rows = list(readers[suffix](path))
    if not rows:
        raise UserInputError(f"{path} has no rows")
    return rows


def _json_lines(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            source = f"{path.name}:{number}"
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserInputError(
                    f"{source}: not valid JSON ({exc.msg} at column {exc.colno})"
                ) from exc
            yield Row(_as_object(value, source), source)


def _json_file(path: Path) -> Iterator[Row]:
    text = path.read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        # many ".json" training files are JSON Lines in fact
        yield from _json_lines(path)
        return
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        value = value["data"]
    if not isinstance(value, list):
        raise UserInputError(f"{path.name}: expected a JSON array of rows or JSON Lines")
    for index, item in enumerate(value):
        source = f"{path.name}: row {index}"
        yield Row(_as_object(item, source), source)


def _as_object(value: Any, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserInputError(f"{source}: a row must be a JSON object, not {type(value).__name__}")
    return value


def _csv(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise UserInputError(f"{path.name}: a CSV file needs a header row naming the columns")
        for row in reader:
            source = f"{path.name}:{reader.line_num}"
            if None in row:  # more cells than the header has columns
                raise UserInputError(
                    f"{source}: more cells than the header's {len(reader.fieldnames)} columns"
                )
            yield Row({k: _cell(v) for k, v in row.items()}, source)


def _cell(value: str | None) -> Any:
    """CSV cells are text; a cell holding a JSON list (e.g. a `messages` column) is parsed."""
    if value is not None and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _parquet(path: Path) -> Iterator[Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise OptionalDependencyError("reading Parquet needs pyarrow: pip install pyarrow") from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid / OSError variants
        raise UserInputError(f"{path.name}: not a readable Parquet file ({exc})") from exc
    for index, item in enumerate(table.to_pylist()):
        yield Row(item, f"{path.name}: row {index}")


def _text(path: Path) -> Iterator[Row]:
    """Plain text: each block of lines separated by a blank line is one document."""
    block: list[str] = []
    start = 1
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                if not block:
                    start = number
                block.append(line)
            elif block:
                yield Row({"text": "".join(block).rstrip("\n")}, f"{path.name}:{start}")
                block = []
    if block:
        yield Row({"text": "".join(block).rstrip("\n")}, f"{path.name}:{start}")


def _datasets_folder(path: Path) -> Iterator[Row]:
    try:
        import datasets
    except ImportError as exc:
        raise OptionalDependencyError(
            f"{path} is a folder; reading a `datasets` folder needs: pip install datasets"
        ) from exc
    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError as exc:
        raise UserInputError(
            f"{path} is a folder but not one `datasets.save_to_disk` wrote; give a {_SUFFIXES}"
        ) from exc
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise UserInputError(
                f"{path}: the dataset has no 'train' split (it has {', '.join(loaded)})"
            )
        loaded = loaded["train"]
    for index, item in enumerate(loaded):
        yield Row(dict(item), f"{path.name}: row {index}")
