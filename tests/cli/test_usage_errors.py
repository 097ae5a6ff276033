"""Usage errors (unknown verb, missing argument, unknown option) print one line with the
suggestion and exit 2, never a traceback, whichever click typer runs on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["rn", "smollm2"], "No such command 'rn'. Did you mean 'run'?"),
        (["run"], "Missing argument 'model'."),
        (["list", "--bogus"], "No such option: --bogus."),
    ],
)
def test_usage_error_is_one_line_exit_2(args: list[str], expected: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hearth", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HEARTH_HOME": str(tmp_path), "NO_COLOR": "1"},
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
