"""`hearth bench --scenario tune --peer peft` on the real SmolLM2 at a tiny size: both sides
train the same blocks from the same adapter and their losses agree (never speed); bad
peers and mixed scenarios fail in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run_hearth as _hearth

from hearth.bench.tune_bench import TuneBenchConfig, summary


@pytest.mark.slow
def test_tune_bench_against_peft(
    smollm2_gguf: Path, hearth_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _hearth(
        capsys, "bench", str(smollm2_gguf), "--scenario", "tune", "--peer", "peft", "--quick",
        "--json", "--threads", "1",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["scenario"] == "tune" and result["settings"]["tokens_per_step"] == 128
    runs = {r["engine"]: r for r in result["runs"]}
    assert list(runs) == ["hearth", "hearth-qlora", "hearth-full", "peft"]
    for r in runs.values():
        assert len(r["losses"]) == 2 and r["tokens_per_s"] > 0
        assert r["peak_rss_mb"] >= r["loaded_rss_mb"] > r["baseline_rss_mb"] > 0
    # the int4 base takes less memory than the bf16 one
    assert runs["hearth-qlora"]["loaded_rss_mb"] < runs["hearth"]["loaded_rss_mb"]
    hearth, peft = runs["hearth"]["losses"], runs["peft"]["losses"]
    # same blocks, same initial adapter: bf16 weights vs PEFT's fp32 under bf16 autocast
    assert hearth[0] == pytest.approx(peft[0], rel=0.02)
    assert result["summary"]["max_loss_rel_diff"] <= 0.02


def test_summary_takes_the_best_rate_and_the_highest_rss() -> None:
    runs = [
        {"engine": e, "tokens_per_s": t, "tokens_per_cpu_s": t / 2, "peak_rss_mb": m,
         "losses": [2.0, 1.0]}
        for e, t, m in (("hearth", 100.0, 900.0), ("peft", 50.0, 1000.0),
                        ("hearth", 120.0, 950.0), ("peft", 60.0, 1200.0))
    ]  # fmt: skip
    got = summary(runs)
    assert got["engines"]["hearth"]["tokens_per_s"] == 120.0
    assert got["engines"]["peft"]["peak_rss_mb"] == 1200.0
    assert got["speedup_vs_peft"] == 2.0 and got["peak_rss_vs_peft"] == 0.79
    assert got["max_loss_rel_diff"] == 0.0


@pytest.mark.parametrize(
    "args,message",
    [
        (["--peer", "llama.cpp"], "--scenario tune compares with peft, not llama.cpp"),
        (["--scenario", "decode"], "--scenario tune runs alone"),
        (["--steps", "0"], "--steps must be a positive integer"),
    ],
)
def test_tune_bench_usage_errors(
    smollm2_gguf: Path, hearth_home: Path, capsys: pytest.CaptureFixture[str],
    args: list[str], message: str,
) -> None:  # fmt: skip
    code, _, err = _hearth(capsys, "bench", str(smollm2_gguf), "--scenario", "tune", *args)
    assert code == 2 and message in err


def test_config_checks_its_fields() -> None:
    with pytest.raises(ValueError, match="steps"):
        TuneBenchConfig(steps=0)
    with pytest.raises(ValueError, match="methods"):
        TuneBenchConfig(methods=("full",))
