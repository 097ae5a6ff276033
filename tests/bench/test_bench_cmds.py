"""`hearth bench --quick` end to end (hearth only, no peers): the JSON object has the shape
the issue specifies and every request completes; unknown peers and modes fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import Cli

from hearth.bench.peers import check_peer
from hearth.errors import UserInputError


def test_quick_bench_json(smollm2_gguf: Path, hearth_home: Path, cli: Cli) -> None:
    code, out, err = cli("bench", str(smollm2_gguf), "--quick", "--json", "--threads", "1")
    assert code == 0, err
    result = json.loads(out)
    assert {"machine", "model", "runs", "ratios"} <= set(result)
    assert result["machine"]["cores"] >= 1 and result["machine"]["memory_bandwidth_gbps"] > 0
    assert isinstance(result["machine"]["dedicated_cpu"], bool)
    assert isinstance(result["machine"]["kernels"], list)
    assert result["machine"]["backend"].startswith(("torch", "cpu-"))
    assert isinstance(result["machine"]["amx"], bool)
    assert result["machine"]["kernel_threads"] in ("pool", "openmp")
    runs = result["runs"]
    assert {(r["scenario"], r["concurrency"]) for r in runs} == {
        ("decode", 1),
        ("concurrent", 1),
        ("concurrent", 4),
        ("prefix", 4),
    }
    for r in runs:
        assert r["engine"] == "hearth" and r["failed_requests"] == 0
        assert r["output_tokens_per_s"] > 0 and r["ttft_ms_p50"] is not None
        assert r["peak_rss_mb"] > r["baseline_rss_mb"] > 0
    decode = next(r for r in runs if r["scenario"] == "decode")
    assert decode["output_tokens"] == 8
    prefix = [r for r in runs if r["scenario"] == "prefix"]
    assert sorted(r["prefix_caching"] for r in prefix) == [False, True]
    assert result["ratios"]["prefix_caching_speedup"] is not None
    peak = max(r["peak_rss_mb"] for r in runs)
    over = result["ratios"]["hearth_peak_rss_over_baseline_mb"]
    assert over == round(peak - runs[0]["baseline_rss_mb"], 1) and 0 < over < peak


def test_bad_arguments(smollm2_gguf: Path, hearth_home: Path, cli: Cli) -> None:
    code, _, err = cli("bench", str(smollm2_gguf), "--quant", "int3")
    assert code == 2 and "--quant must be one of" in err
    code, _, err = cli("bench", str(smollm2_gguf), "--concurrency", "4,x")
    assert code == 2 and "--concurrency takes positive request counts" in err
    with pytest.raises(UserInputError, match="unknown peer"):
        check_peer("vllm")


def test_bench_runs_the_license_gate(nc_gguf: Path, hearth_home: Path, cli: Cli) -> None:
    from hearth.config import load_settings
    from hearth.licenses.policy import set_policy_value

    set_policy_value(load_settings(), "commercial", "true")
    code, out, err = cli("bench", str(nc_gguf), "--quick", "--json")
    assert code == 3 and "NonCommercial" in err and out == ""  # refused as `run` refuses it
