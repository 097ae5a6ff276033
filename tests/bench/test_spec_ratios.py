"""The spec scenario's ratios (hearth.bench.runner._spec_ratios) from bench runs as the
workers report them: hearth's own speed-up reads output over duration; against llama.cpp,
single streams read tokens after the first over the time after the first (summed over a
workload's streams), and the best of llama.cpp's prompt-lookup settings is named."""

from __future__ import annotations

from typing import Any

from hearth.bench.runner import _spec_ratios


def _run(engine: str, scenario: str, rate: float, speculative: str = "off", **extra: Any) -> dict:
    # 65 tokens: 64 after the first at `rate`, plus one second of prefill
    return {
        "engine": engine,
        "scenario": scenario,
        "concurrency": 1,
        "num_requests": 1,
        "output_tokens": 65,
        "duration_s": 64 / rate + 1.0,
        "decode_tokens_per_s": rate,
        "speculative": speculative,
        **extra,
    }


def _lookup(k: int) -> dict[str, int]:
    return {"max_ngram_size": 2, "num_pred_tokens": k}


def test_spec_ratios_against_llama_cpp_and_its_best_setting() -> None:
    runs = [
        _run("hearth", "spec-quote", 100.0),
        _run("hearth", "spec-quote", 400.0, "auto"),
        _run("llama.cpp", "spec-quote", 80.0),
        _run("llama.cpp", "spec-quote", 120.0, "prompt-lookup", prompt_lookup=_lookup(2)),
        _run("llama.cpp", "spec-quote", 200.0, "prompt-lookup", prompt_lookup=_lookup(5)),
        _run("llama.cpp", "spec-quote", 160.0, "prompt-lookup", prompt_lookup=_lookup(10)),
        # two chat streams: their decode time adds up (64/50 + 64/100 s for 128 tokens)
        _run("hearth", "spec-chat", 50.0),
        _run("hearth", "spec-chat", 100.0),
        _run("hearth", "spec-chat", 50.0, "auto"),
        _run("hearth", "spec-chat", 100.0, "auto"),
        _run("llama.cpp", "spec-chat", 40.0),
        _run("llama.cpp", "spec-chat", 40.0),
        _run("llama.cpp", "spec-chat", 30.0, "prompt-lookup", prompt_lookup=_lookup(2)),
        _run("llama.cpp", "spec-chat", 30.0, "prompt-lookup", prompt_lookup=_lookup(2)),
    ]
    ratios = _spec_ratios(runs)
    # hearth's own: output over duration, prefill included (65/1.64 over 65/1.16)
    assert ratios["spec_quote_speedup"] == round((64 / 100 + 1) / (64 / 400 + 1), 3)
    assert ratios["spec_quote_vs_llama_cpp"] == 5.0  # 400 / 80, prefill left out
    assert (
        ratios["spec_quote_llama_cpp_best_spec"]
        == "prompt-lookup max_ngram_size=2 num_pred_tokens=5"
    )
    assert ratios["spec_quote_llama_cpp_best_spec_speedup"] == 2.5  # 200 / 80
    assert ratios["spec_quote_vs_llama_cpp_best_spec"] == 2.0  # 400 / 200
    hearth_chat = 128 / (64 / 50 + 64 / 100)
    assert ratios["spec_chat_speedup"] == 1.0
    assert ratios["spec_chat_vs_llama_cpp"] == round(hearth_chat / 40, 3)
    assert ratios["spec_chat_llama_cpp_best_spec_speedup"] == 0.75  # lookup costs llama.cpp here
    assert ratios["spec_chat_vs_llama_cpp_best_spec"] == round(hearth_chat / 30, 3)
    assert not any(key.startswith("spec_concurrent") for key in ratios)


def test_no_llama_cpp_runs_no_peer_ratios() -> None:
    runs = [_run("hearth", "spec-quote", 100.0), _run("hearth", "spec-quote", 200.0, "ngram")]
    assert set(_spec_ratios(runs)) == {"spec_quote_speedup"}
