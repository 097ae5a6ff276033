"""`hearth bench --scenario spec --quick`: each spec workload runs twice in hearth (off and
the chosen mode), the quoting one drafts and accepts, the ratios are there; a bad mode is
refused before anything loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run_hearth as _hearth


def test_quick_spec_bench(
    smollm2_gguf: Path, hearth_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _hearth(
        capsys,
        "bench",
        str(smollm2_gguf),
        "--scenario",
        "spec",
        "--quick",
        "--json",
        "--threads",
        "1",
    )
    assert code == 0, err
    result = json.loads(out)
    runs = result["runs"]
    modes = {(r["scenario"], r["speculative"]) for r in runs}
    assert modes == {
        (s, m) for s in ("spec-quote", "spec-chat", "spec-concurrent") for m in ("off", "auto")
    }
    quote = next(r for r in runs if r["scenario"] == "spec-quote" and r["speculative"] == "auto")
    assert quote["draft_n"] >= quote["draft_n_accepted"] > 0
    assert quote["output_tokens"] == 32 and quote["failed_requests"] == 0
    for key in ("spec_quote_speedup", "spec_chat_speedup", "spec_concurrent_speedup"):
        assert result["ratios"][key] > 0


def test_bad_speculative_mode(
    smollm2_gguf: Path, hearth_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _hearth(
        capsys, "bench", str(smollm2_gguf), "--scenario", "spec", "--speculative", "medusa"
    )
    assert code == 2 and "--speculative 'medusa' is not a mode" in err
