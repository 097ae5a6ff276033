"""The lora scenario (issue 24's target): the concurrent scenario's requests (the same ids,
the same output lengths) run by hearth twice in one process and on one engine: on the base
alone, and spread round-robin over LoRA adapters, each request naming its own, so rows of
different adapters share every decode step. Runs alternate (base, lora, base, lora) and the
best of each counts, so a burst of load from other programs skews both alike. Reports
output tokens/s and process CPU seconds of each, their ratios, and the adapters' ranks and
targets. No peer: llama.cpp cannot batch requests of different adapters (it runs one
adapter at a time), so it has no run of the same shape to compare.

With no adapters given, the bench writes synthetic ones: rank 16 on all seven projections
of the base (PEFT layout, random A and nonzero random B from a fixed seed, so the update
is real work and changes the answers). Knows nothing of printing."""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from hearth.bench.workloads import RequestTiming, Workload, concurrent_prompts, summarize

__all__ = ["LORA_TARGETS", "run_lora_bench", "synthetic_adapters"]

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_NOTE = (
    "no peer: llama.cpp cannot batch requests that use different adapters "
    "(ggml-org/llama.cpp#10374); it would run them one adapter at a time"
)


def _shapes(config: Any) -> dict[str, tuple[str, int, int]]:
    """target -> (HF module path under a layer, in features, out features)."""
    h, i = config.hidden_size, config.intermediate_size
    q, kv = (
        config.num_attention_heads * config.head_dim,
        config.num_key_value_heads * config.head_dim,
    )
    return {
        "q_proj": ("self_attn.q_proj", h, q),
        "k_proj": ("self_attn.k_proj", h, kv),
        "v_proj": ("self_attn.v_proj", h, kv),
        "o_proj": ("self_attn.o_proj", q, h),
        "gate_proj": ("mlp.gate_proj", h, i),
        "up_proj": ("mlp.up_proj", h, i),
        "down_proj": ("mlp.down_proj", i, h),
    }


def synthetic_adapters(
    config: Any, folder: Path, count: int = 4, rank: int = 16, seed: int = 0
) -> dict[str, Path]:
    """`count` PEFT LoRA folders (name -> folder) of rank `rank` on all seven projections
    of every layer of a base with `config` (a ModelConfig). B is random too (PEFT's default
    init makes it zero, an update that does nothing)."""
    from safetensors.torch import save_file

    out: dict[str, Path] = {}
    shapes = _shapes(config)
    for n in range(count):
        name = f"lora{n}"
        generator = torch.Generator().manual_seed(seed * 1000 + n)
        weights: dict[str, torch.Tensor] = {}
        for layer in range(config.num_hidden_layers):
            for path, d_in, d_out in shapes.values():
                key = f"base_model.model.model.layers.{layer}.{path}"
                # A ~ kaiming-like 1/sqrt(in); B small: a visible change, not noise
                a = torch.randn(rank, d_in, generator=generator) / d_in**0.5
                b = torch.randn(d_out, rank, generator=generator) * 0.02
                weights[f"{key}.lora_A.weight"] = a.contiguous()
                weights[f"{key}.lora_B.weight"] = b.contiguous()
        target = folder / name
        target.mkdir(parents=True, exist_ok=True)
        adapter_config = {
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": rank,
            "lora_alpha": 2 * rank,
            "lora_dropout": 0.0,
            "use_rslora": False,
            "target_modules": list(LORA_TARGETS),
            "bias": "none",
            "fan_in_fan_out": False,
            "base_model_name_or_path": None,
        }
        (target / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n")
        save_file(weights, str(target / "adapter_model.safetensors"), metadata={"format": "pt"})
        out[name] = target
    return out


def _cpu_seconds() -> float:
    t = os.times()  # this process, every thread
    return t.user + t.system


def _drive(
    engine: Any, prompts: list[list[int]], max_tokens: list[int], loras: list[str | None]
) -> tuple[list[RequestTiming], list[list[int]], float]:
    """Every request at once, each with its adapter (or none), greedy for exactly its
    max_tokens: timings, each request's output ids, and the wall seconds."""
    from hearth.bench.hearth_runner import drive_requests
    from hearth.engine.sampling_params import SamplingParams

    params = [
        SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True, lora=lora)
        for n, lora in zip(max_tokens, loras, strict=True)
    ]
    start = time.perf_counter()
    timings, tokens = drive_requests(engine, prompts, params, start)
    return timings, tokens, time.perf_counter() - start


def _adapter_rank(path: Path, config: Any) -> int:
    from hearth.weights.gguf_adapter import gguf_adapter_file, read_gguf_adapter
    from hearth.weights.peft_adapter import read_peft_adapter

    gguf_file = gguf_adapter_file(path)
    peft = read_gguf_adapter(gguf_file, config) if gguf_file else read_peft_adapter(path)
    return peft.rank


def run_lora_bench(
    path: Path,
    threads: int,
    concurrency: tuple[int, ...] = (16,),
    adapters: Mapping[str, Path] | None = None,
    quick: bool = False,
    quant: str = "auto",
    rounds: int = 2,
    seed: int = 0,
) -> dict[str, Any]:
    """The scenario's JSON-ready result. adapters: name -> PEFT folder or GGUF LoRA file;
    None or empty: 4 synthetic rank-16 adapters on all seven projections."""
    from hearth.bench.machine import machine_info
    from hearth.config import load_settings
    from hearth.engine.engine_config import EngineConfig
    from hearth.engine.llm import build_engine
    from hearth.model.backend import BackendConfig
    from hearth.model.quant_load import load_decoder
    from hearth.tokenizer.loading import load_tokenizer

    settings = load_settings()
    threads = threads or settings.threads  # as the other scenarios: 0 is the setting's
    torch.set_num_threads(threads)
    loaded = load_decoder(path, quant, backend=BackendConfig.of(settings))
    config = loaded.weights.config
    tokenizer = load_tokenizer(path)
    with tempfile.TemporaryDirectory(prefix="hearth-lora-bench-") as tmp:
        synthetic = not adapters
        chosen = dict(adapters or synthetic_adapters(config, Path(tmp), seed=seed))
        ranks = {name: _adapter_rank(Path(p), config) for name, p in chosen.items()}
        levels = sorted(set(concurrency))
        workloads = []
        for c in levels:
            # the concurrent scenario's very requests at this level (same seed string)
            prompts, outs = concurrent_prompts(
                random.Random(f"{seed}-concurrent-{c}"), c, config.vocab_size, quick
            )
            workloads.append(Workload("lora", c, prompts, outs, prefix_caching=False))
        longest = (
            max(len(p) + n for w in workloads for p, n in zip(w.prompts, w.max_tokens, strict=True))
            + 16
        )
        engine = build_engine(
            config,
            loaded.decoder,
            tokenizer,
            EngineConfig(
                max_num_seqs=max(64, *levels),
                max_model_len=min(longest, config.max_position_embeddings),
                enable_prefix_caching=False,  # repeated rounds must not skip their prefill
                seed=0,
                max_loras=min(len(chosen), max(64, *levels)),
                max_lora_rank=max(ranks.values()),
            ),
            loaded.dtype,
        )
        info = [engine.add_lora(name, p) for name, p in chosen.items()]
        names = list(chosen)
        runs: list[dict[str, Any]] = []
        with torch.inference_mode():
            # kernels built, weights faulted in, every adapter in its slot before timing
            warm = workloads[0].prompts[0][:16]
            _drive(engine, [warm] * (len(names) + 1), [4] * (len(names) + 1), [None, *names])
            for w in workloads:
                spread: list[str | None] = [names[i % len(names)] for i in range(len(w.prompts))]
                alone: list[str | None] = [None] * len(w.prompts)
                best: dict[str, tuple[dict[str, Any], list[list[int]]]] = {}
                for _ in range(max(1, rounds)):
                    for mode, loras in (("base", alone), ("lora", spread)):
                        cpu0 = _cpu_seconds()
                        timings, tokens, seconds = _drive(engine, w.prompts, w.max_tokens, loras)
                        cpu = _cpu_seconds() - cpu0
                        run = summarize("hearth", w, timings, seconds)
                        run.update(
                            lora=mode == "lora",
                            adapters=len(names) if mode == "lora" else 0,
                            cpu_s=round(cpu, 3),
                            output_tokens_per_cpu_s=round(run["output_tokens"] / cpu, 2)
                            if cpu > 0
                            else None,
                        )
                        if mode not in best or run["duration_s"] < best[mode][0]["duration_s"]:
                            best[mode] = (run, tokens)
                base, lora = best["base"][0], best["lora"][0]
                differ = sum(a != b for a, b in zip(best["base"][1], best["lora"][1], strict=True))
                lora["requests_differing_from_base"] = differ
                runs.extend([base, lora])
    ratios: dict[str, Any] = {}
    for c in levels:
        base, lora = (next(r for r in runs if r["concurrency"] == c and r["lora"] == m)
                      for m in (False, True))  # fmt: skip
        ratios[f"lora_{c}_vs_base"] = _div(lora["output_tokens_per_s"], base["output_tokens_per_s"])
        ratios[f"lora_{c}_vs_base_per_cpu_s"] = _div(
            lora["output_tokens_per_cpu_s"], base["output_tokens_per_cpu_s"]
        )
    first = levels[-1] if 16 not in levels else 16
    ratios["lora_vs_base"] = ratios[f"lora_{first}_vs_base"]
    ratios["lora_vs_base_per_cpu_s"] = ratios[f"lora_{first}_vs_base_per_cpu_s"]
    return {
        "scenario": "lora",
        "model": {"path": str(path), "quant": quant},
        "machine": machine_info(threads, probe=False),
        "threads": threads,
        "rounds": max(1, rounds),
        "adapters": [
            {
                "name": a.name,
                "rank": a.rank,
                "targets": sorted(a.targets),
                "synthetic": synthetic,
                "path": None if synthetic else str(a.path),
            }
            for a in info
        ],
        "runs": runs,
        "ratios": ratios,
        "notes": [_NOTE],
    }


def _div(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None
