"""Data location and reading: precedence of --data-dir / env / home, and errors that
name the file for missing or corrupt data."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.config import load_settings
from hearth.errors import NotFoundError, UserInputError
from hearth.eval.data import ENV_VAR, read_jsonl, resolve_data_dir


def test_data_dir_precedence(tmp_path: Path) -> None:
    home = {"HEARTH_HOME": str(tmp_path / "home")}
    assert resolve_data_dir(None, load_settings(home)) == tmp_path / "home" / "eval-data"
    from_env = load_settings({**home, ENV_VAR: str(tmp_path / "e")})
    assert resolve_data_dir(None, from_env) == tmp_path / "e"
    assert resolve_data_dir(tmp_path / "x", from_env) == tmp_path / "x"


def test_reads_real_file(eval_data: Path) -> None:
    docs = read_jsonl(eval_data, "arc_challenge/validation.jsonl", ["question", "choices"])
    assert len(docs) == 30  # the fixture keeps 30 of the 299
    assert docs[0]["choices"]


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"arc_challenge/test\.jsonl.*--data-dir"):
        read_jsonl(tmp_path, "arc_challenge/test.jsonl")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"question": 1}\n{not json\n', "line 2 is not JSON"),
        ('[1, 2]\n', "line 1 is not a JSON object"),
        ('{"a": 1}\n', "line 1 lacks question"),
        ("\n\n", "is empty"),
        (b"\xff\xfe\x00".decode("latin-1"), "not UTF-8"),
    ],
)
def test_corrupt_file_is_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "t" / "x.jsonl"
    path.parent.mkdir()
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(UserInputError, match=message) as info:
        read_jsonl(tmp_path, "t/x.jsonl", ["question"])
    assert str(path) in str(info.value)
