"""`hearth bench --scenario lora --quick` on the real SmolLM2: the JSON's shape, the
synthetic adapters (rank 16 on all seven projections) changing the answers, adapters given
with --lora, and bad options failing clearly (never speed)."""

from __future__ import annotations

import json
from pathlib import Path

from cli_runner import Cli

from hearth.bench.lora_bench import LORA_TARGETS, synthetic_adapters
from hearth.weights.loader import load_weights


def test_lora_scenario_json(smollm2_gguf: Path, hearth_home: Path, cli: Cli) -> None:
    code, out, err = cli(
        "bench", str(smollm2_gguf), "--scenario", "lora", "--quick", "--json",
        "--threads", "1", "--concurrency", "16",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["scenario"] == "lora" and result["notes"]
    assert [(a["rank"], tuple(a["targets"])) for a in result["adapters"]] == [
        (16, tuple(sorted(LORA_TARGETS)))
    ] * 4
    runs = result["runs"]
    assert [(r["lora"], r["adapters"], r["concurrency"]) for r in runs] == [
        (False, 0, 16),
        (True, 4, 16),
    ]
    base, lora = runs
    for r in runs:
        assert r["engine"] == "hearth" and r["failed_requests"] == 0
        assert r["output_tokens_per_s"] > 0 and r["cpu_s"] > 0
        assert r["output_tokens_per_cpu_s"] > 0
    # the very same requests: same prompts and output lengths, different answers
    assert base["prompt_tokens"] == lora["prompt_tokens"]
    assert base["output_tokens"] == lora["output_tokens"]
    assert lora["requests_differing_from_base"] > 0
    ratios = result["ratios"]
    assert ratios["lora_vs_base"] == ratios["lora_16_vs_base"] > 0
    assert ratios["lora_vs_base"] == round(
        lora["output_tokens_per_s"] / base["output_tokens_per_s"], 3
    )
    assert ratios["lora_vs_base_per_cpu_s"] > 0


def test_lora_scenario_with_given_adapters(
    smollm2_gguf: Path, hearth_home: Path, cli: Cli, tmp_path: Path
) -> None:
    config = load_weights(smollm2_gguf).config
    made = synthetic_adapters(config, tmp_path, count=2, rank=8, seed=3)
    code, out, err = cli(
        "bench", str(smollm2_gguf), "--scenario", "lora", "--quick", "--json", "--threads", "1",
        "--concurrency", "4", *(f"--lora=mine{i}={p}" for i, p in enumerate(made.values())),
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert [(a["name"], a["rank"], a["synthetic"]) for a in result["adapters"]] == [
        ("mine0", 8, False),
        ("mine1", 8, False),
    ]
    assert [r["concurrency"] for r in result["runs"]] == [4, 4]
    assert "lora_4_vs_base" in result["ratios"]


def test_lora_scenario_bad_options(smollm2_gguf: Path, hearth_home: Path, cli: Cli) -> None:
    gguf = str(smollm2_gguf)
    code, _, err = cli("bench", gguf, "--scenario", "lora", "--lora", "nameonly")
    assert code == 2 and "--lora takes NAME=PATH" in err
    code, _, err = cli("bench", gguf, "--scenario", "lora", "--lora", "a=/no/such/adapter")
    assert code == 2 and "does not exist" in err
    code, _, err = cli("bench", gguf, "--scenario", "lora", "--peer", "llama.cpp")
    assert code == 2 and "has no peer" in err
    code, _, err = cli("bench", gguf, "--scenario", "lora", "--scenario", "decode")
    assert code == 2 and "runs alone" in err
    code, _, err = cli("bench", gguf, "--lora", "a=/tmp")
    assert code == 2 and "--scenario lora" in err
