"""Bad input of --pipeline-parallel, through the real CLI entry point: more stages than the
model has layers (or none) exits 2 naming the valid values, before `serve` listens and
before `run` spawns anything; with --tensor-parallel or --replicas it is refused (exit 2);
tp-worker needs exactly one of the two splits."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import run_hearth_raw as _run

from hearth.config import load_settings


def test_serve_refuses_more_stages_than_layers(
    hearth_home: Path, smollm2_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hearth.store import Store

    Store(load_settings()).import_path(smollm2_gguf, "smollm2:135m")
    code, out, err = _run(
        capsys, "serve", "smollm2:135m", "--pipeline-parallel", "31", "--port", "1"
    )
    assert code == 2 and "serving" not in out and "Traceback" not in err
    assert "30 decoder layers" in err and "valid values: 1 to 30" in err
    assert len(err.strip().splitlines()) == 1


def test_run_refuses_no_stages_and_low_bit_weights(
    hearth_home: Path, smollm2_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "run", str(smollm2_gguf), "--pipeline-parallel", "0", "hi")
    assert code == 2 and "--pipeline-parallel must be >= 1" in err and "Traceback" not in err
    code, _, err = _run(capsys, "run", str(smollm2_gguf), "--pipeline-parallel", "2",
                        "--quant", "int4", "hi")  # fmt: skip
    assert code == 2 and "--quant none" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tensor-parallel", "3", "--pipeline-parallel", "2"], "do not combine"),
        (["--replicas", "2", "--pipeline-parallel", "2"], "--replicas with --pipeline-parallel"),
    ],
)
def test_serve_refuses_pipeline_parallel_with_another_split(
    hearth_home: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    code, out, err = _run(capsys, "serve", "--port", "1", *flags)
    assert code == 2 and message in err and "Traceback" not in err and "serving" not in out


def test_run_refuses_tensor_and_pipeline_parallel_together(
    hearth_home: Path, smollm2_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "run", str(smollm2_gguf), "--tensor-parallel", "3",
                        "--pipeline-parallel", "2", "hi")  # fmt: skip
    assert code == 2 and "do not combine" in err


def test_tp_worker_needs_one_split(hearth_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "tp-worker", "m", "--nnodes", "2", "--node-rank", "1")
    assert code == 2 and "one of --tensor-parallel N or --pipeline-parallel N" in err


def test_serve_refuses_no_stages(hearth_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "serve", "--port", "1", "--pipeline-parallel", "0")
    assert code == 2 and "--pipeline-parallel must be >= 1" in err and "Traceback" not in err
