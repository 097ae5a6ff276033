"""Bad input of the scale-out flags, through the real CLI entry point: a --tensor-parallel
that does not split the model's heads exits 2 naming the valid values (before `serve`
listens, before `run` spawns anything); --nproc 0 exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import run_hearth_raw as _run

from hearth.config import load_settings


def test_serve_refuses_a_split_that_does_not_divide_the_heads(
    hearth_home: Path, smollm2_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hearth.store import Store

    Store(load_settings()).import_path(smollm2_gguf, "smollm2:135m")
    code, out, err = _run(capsys, "serve", "smollm2:135m", "--tensor-parallel", "2", "--port", "1")
    assert code == 2 and "serving" not in out and "Traceback" not in err
    assert "9 attention heads, 3 KV heads" in err and "valid values: 1, 3" in err
    assert len(err.strip().splitlines()) == 1


def test_run_refuses_a_split_that_does_not_divide_the_heads(
    hearth_home: Path, smollm2_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "run", str(smollm2_gguf), "--tensor-parallel", "2", "hi")
    assert code == 2 and "valid values: 1, 3" in err and "Traceback" not in err
    code, _, err = _run(capsys, "run", str(smollm2_gguf), "--tensor-parallel", "3",
                        "--quant", "int4", "hi")  # fmt: skip
    assert code == 2 and "--quant none" in err


def test_tune_refuses_nproc_zero(hearth_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "tune", "x", "--data", "d.jsonl", "--name", "y", "--nproc", "0")
    assert code == 2 and "--nproc must be >= 1" in err
