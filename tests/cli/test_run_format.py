"""`hearth run --format`: the one-shot answer follows a JSON-schema file; a regex that does
not compile or a schema keyword that cannot be enforced is refused (exit 2, naming it)
before the model loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 20},
        "country": {"enum": ["France", "Germany", "Italy"]},
    },
    "required": ["city", "country"],
    "additionalProperties": False,
}


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTH_HOME": str(tmp_path / "home"), "HEARTH_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "hearth", "run", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )


def test_format_schema_file(smollm2_gguf: Path, tmp_path: Path) -> None:
    schema = tmp_path / "capital.json"
    schema.write_text(json.dumps(SCHEMA))
    proc = _run(
        tmp_path,
        str(smollm2_gguf),
        "The capital of France, as JSON.",
        "--format",
        str(schema),
        "--temperature",
        "1",
        "--seed",
        "1",
        "--ctx",
        "512",
    )
    assert proc.returncode == 0, proc.stderr
    jsonschema.validate(json.loads(proc.stdout), SCHEMA)


def test_bad_format_is_refused_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hearth.cli import main

    monkeypatch.setenv("HEARTH_HOME", str(tmp_path / "home"))
    schema = tmp_path / "unique.json"
    schema.write_text(json.dumps({"type": "array", "uniqueItems": True}))
    for value, says in [
        ("regex:(unclosed", "regex cannot be compiled"),
        (str(schema), "uniqueItems"),
        ("grammar:/no/such/file.lark", "no file"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main(["run", "no-such-model", "hi", "--format", value])
        assert exit_.value.code == 2 and says in capsys.readouterr().err
