"""`hearth embed` as a real subprocess: the vector of a text (argument or stdin) equals
LLM.embed's; a rerank model, an over-long text and a bad --dimensions are one-line usage
errors (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hearth.engine.llm import LLM


def _hearth(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTH_HOME": str(home), "HEARTH_NUM_THREADS": "1", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "hearth", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def test_embed_prints_the_vector(all_minilm_folder: Path, hearth_home: Path) -> None:
    done = _hearth(hearth_home, "embed", str(all_minilm_folder), "-", stdin="hello world")
    assert done.returncode == 0, done.stderr
    vector = json.loads(done.stdout)
    (want,) = LLM(all_minilm_folder, license_use=None).embed(["hello world"])
    assert vector == pytest.approx(want, abs=1e-6)
    short = _hearth(hearth_home, "embed", str(all_minilm_folder), "hi", "--dimensions", "8")
    assert len(json.loads(short.stdout)) == 8


def test_embed_usage_errors(
    all_minilm_folder: Path, tiny_cross_encoder: Path, hearth_home: Path
) -> None:
    long_text = " ".join(["word"] * 400)
    done = _hearth(hearth_home, "embed", str(all_minilm_folder), long_text)
    assert done.returncode == 2 and "402 tokens" in done.stderr and "--truncate" not in done.stdout
    assert "Traceback" not in done.stderr
    cut = _hearth(hearth_home, "embed", str(all_minilm_folder), long_text, "--truncate")
    assert cut.returncode == 0 and len(json.loads(cut.stdout)) == 384
    bad = _hearth(hearth_home, "embed", str(all_minilm_folder), "x", "--dimensions", "999")
    assert bad.returncode == 2 and "between 1 and 384" in bad.stderr
    ranker = _hearth(hearth_home, "embed", str(tiny_cross_encoder), "hello")
    assert ranker.returncode == 2 and "needs an embedding model" in ranker.stderr
    errors = [line for line in ranker.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in ranker.stderr
