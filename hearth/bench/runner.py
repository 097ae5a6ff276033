"""`hearth bench` end to end: resolve the model, build the workloads, run each engine in a
worker process of its own (hearth, then each peer), and assemble the one JSON object the
issue specifies: machine, model, runs, ratios (and accuracy when asked). Knows nothing of
printing (cli/bench_cmds.py renders it)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearth.bench.machine import machine_info
from hearth.bench.peers import check_peer, llama_cpp_rebuild_hint
from hearth.bench.workloads import DEFAULT_SCENARIOS, SCENARIOS, make_workloads
from hearth.config import peer_environment
from hearth.errors import HearthError


@dataclass(frozen=True)
class BenchConfig:
    model: str = "smollm2"
    quant: str = "auto"
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    peers: tuple[str, ...] = ()
    threads: int = 0  # 0: the cores available
    quick: bool = False
    accuracy: bool = False
    probe_bandwidth: bool = True
    seed: int = 0
    concurrency: tuple[int, ...] | None = None  # levels of `concurrent`; None: all
    speculative: str = "auto"  # the mode the spec scenario compares with "off"
    draft: str | None = None  # the draft model of speculative "draft" (a name or a path)
    # a folder with the llama_cpp package the llama.cpp peer imports (e.g. an AVX2-only
    # build); "": settings.bench_llama_cpp_path, else the installed one
    llama_cpp_path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = [s for s in self.scenarios if s not in SCENARIOS]
        if bad or not self.scenarios:
            raise ValueError(f"scenarios must be among {', '.join(SCENARIOS)}, got {bad or '()'}")
        if self.concurrency is not None and (
            not self.concurrency or any(c < 1 for c in self.concurrency)
        ):
            raise ValueError(f"concurrency levels must be >= 1, got {self.concurrency}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


def _run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    # each engine runs under its own defaults: a peer does not inherit the PASSIVE OpenMP
    # wait policy hearth's CLI set for hearth (it slowed llama.cpp's decode 3.5x)
    env = None if spec["engine"] == "hearth" else peer_environment()
    proc = subprocess.run(
        [sys.executable, "-m", "hearth.bench.worker"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode < 0:  # killed by a signal: a crash inside native code, no traceback
        signal_number = -proc.returncode
        hint = f"; {llama_cpp_rebuild_hint(signal_number)}" if spec["engine"] == "llama.cpp" else ""
        raise HearthError(f"the {spec['engine']} bench worker died of signal {signal_number}{hint}")
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-5:]
        raise HearthError(f"the {spec['engine']} bench worker failed: " + " | ".join(tail))
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _ratios(
    runs: list[dict[str, Any]], bandwidth: float | None, weights_mb: float
) -> dict[str, Any]:
    def rate(engine: str, scenario: str, concurrency: int | None = None, **kw: Any) -> float | None:
        for r in runs:
            if r["engine"] == engine and r["scenario"] == scenario:
                if concurrency is not None and r["concurrency"] != concurrency:
                    continue
                if any(r.get(k) != v for k, v in kw.items()):
                    continue
                # one stream: its decode rate (tokens after the first over the time after
                # the first, as a plain streaming run reads it), else output over duration
                return r.get("decode_tokens_per_s") or r["output_tokens_per_s"]
        return None

    def div(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    def duration(caching: bool) -> float | None:
        for r in runs:
            if (
                r["engine"] == "hearth"
                and r["scenario"] == "prefix"
                and r["prefix_caching"] == caching
            ):
                return r["duration_s"]
        return None

    decode = rate("hearth", "decode")
    ratios: dict[str, Any] = {
        "decode_vs_llama_cpp": div(decode, rate("llama.cpp", "decode")),
        "decode_vs_transformers": div(decode, rate("transformers", "decode")),
        "prefix_caching_speedup": div(duration(False), duration(True)),
    }
    levels = sorted({r["concurrency"] for r in runs if r["scenario"] == "concurrent"})
    for c in levels:
        ours = rate("hearth", "concurrent", c)
        if ours is not None:
            ratios[f"concurrent_{c}_vs_llama_cpp"] = div(ours, rate("llama.cpp", "concurrent", c))
    ratios.update(_spec_ratios(runs))
    kv = max((r.get("kv_cache_mb", 0.0) for r in runs if r["engine"] == "hearth"), default=0.0)
    hearth_runs = [r for r in runs if r["engine"] == "hearth"]
    peak = max((r["peak_rss_mb"] for r in hearth_runs), default=None)
    # the memory target: peak RSS <= model file size x 2 + KV budget; the
    # interpreter with torch imported (baseline_rss_mb, ~220 MB) is there before any model
    ratios["hearth_rss_limit_mb"] = round(2 * weights_mb + kv, 1)
    ratios["hearth_peak_rss_mb"] = peak
    ratios["hearth_peak_rss_over_baseline_mb"] = max(
        (round(r["peak_rss_mb"] - r["baseline_rss_mb"], 1) for r in hearth_runs), default=None
    )
    if bandwidth and decode:
        # one decode step reads every weight once: tokens/s * bytes per token / bandwidth
        limit = bandwidth * 1e9 / (weights_mb * 1e6)
        ratios["decode_bandwidth_limit_tokens_per_s"] = round(limit, 1)
        ratios["decode_fraction_of_bandwidth_limit"] = round(decode / limit, 3)
    return ratios


def _spec_ratios(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The spec scenario's speed-ups. `<workload>_speedup`: hearth's own, output tokens
    over duration with speculation over without. Against llama.cpp, without speculation
    (`_vs_llama_cpp`) and with its best prompt-lookup setting (`_vs_llama_cpp_best_spec`,
    the setting named in `_llama_cpp_best_spec`), single streams are read as
    decode_vs_llama_cpp reads them: tokens after the first over the time after the first
    (prefill left out: llama-cpp-python's speculative road computes logits for every
    prompt position, a cost of its Python binding, not of llama.cpp's drafting)."""

    def picked(engine: str, scenario: str, speculating: bool) -> list[dict[str, Any]]:
        return [
            r
            for r in runs
            if r["engine"] == engine
            and r["scenario"] == scenario
            and (r.get("speculative", "off") != "off") == speculating
        ]

    def throughput(rs: list[dict[str, Any]]) -> float | None:
        seconds = sum(r["duration_s"] for r in rs)
        return sum(r["output_tokens"] for r in rs) / seconds if seconds else None

    def stream_rate(rs: list[dict[str, Any]]) -> float | None:
        if not rs or any(not r.get("decode_tokens_per_s") for r in rs):
            return throughput(rs)  # concurrent requests: output over duration
        tokens = [r["output_tokens"] - r["num_requests"] for r in rs]  # each after its first
        seconds = sum(n / r["decode_tokens_per_s"] for n, r in zip(tokens, rs, strict=True))
        return sum(tokens) / seconds

    def div(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    ratios: dict[str, Any] = {}
    for scenario in ("spec-quote", "spec-chat", "spec-concurrent"):
        on, off = picked("hearth", scenario, True), picked("hearth", scenario, False)
        if not on or not off:
            continue
        key = scenario.replace("-", "_")
        ratios[f"{key}_speedup"] = div(throughput(on), throughput(off))
        peer = picked("llama.cpp", scenario, False)
        if peer:
            ratios[f"{key}_vs_llama_cpp"] = div(stream_rate(on), stream_rate(peer))
        by_setting: dict[str, list[dict[str, Any]]] = {}
        for r in picked("llama.cpp", scenario, True):
            name = " ".join(f"{k}={v}" for k, v in sorted(r["prompt_lookup"].items()))
            by_setting.setdefault(f"{r['speculative']} {name}", []).append(r)
        if by_setting:
            rates = {name: stream_rate(rs) or 0.0 for name, rs in by_setting.items()}
            best = max(rates, key=rates.__getitem__)
            ratios[f"{key}_llama_cpp_best_spec"] = best
            ratios[f"{key}_llama_cpp_best_spec_speedup"] = div(rates[best], stream_rate(peer))
            ratios[f"{key}_vs_llama_cpp_best_spec"] = div(stream_rate(on), rates[best])
    return ratios


def run_bench(config: BenchConfig, path: Path, weights_mb: float) -> dict[str, Any]:
    """The bench JSON object. path: the model file; weights_mb: the bytes one decode step
    must read (the file size for a GGUF)."""
    import torch

    from hearth.config import load_settings

    settings = load_settings()
    peer_path = config.llama_cpp_path or settings.bench_llama_cpp_path
    for peer in config.peers:
        check_peer(peer, peer_path)
    threads = config.threads or settings.threads
    torch.set_num_threads(threads)
    from hearth.weights.loader import load_weights

    vocab = load_weights(path).config.vocab_size
    workloads = make_workloads(
        config.scenarios, vocab, config.quick, config.seed, config.concurrency
    )
    if "spec" in config.scenarios:
        from hearth.bench.spec_workloads import spec_workloads
        from hearth.tokenizer.loading import load_tokenizer

        tokenizer = load_tokenizer(path)

        def encode_chat(message: str) -> list[int]:
            conversation = [{"role": "user", "content": message}]
            return list(tokenizer.encode_chat(conversation, add_generation_prompt=True))

        workloads += spec_workloads(
            encode_chat, vocab, config.speculative, config.quick, config.seed
        )
    base = {"path": str(path), "threads": threads, "workloads": [w.to_json() for w in workloads]}
    runs: list[dict[str, Any]] = []
    hearth = _run_worker({**base, "engine": "hearth", "quant": config.quant, "draft": config.draft})
    runs.extend(hearth["runs"])
    errors: dict[str, str] = {}
    peers: dict[str, Any] = {}
    for peer in config.peers:
        try:
            peer_result = _run_worker({**base, "engine": peer, "peer_path": peer_path})
        except HearthError as exc:  # a peer's failure must not lose hearth's numbers
            errors[peer] = str(exc)
            continue
        runs.extend(peer_result["runs"])
        peers[peer] = peer_result.get("build", {})
    machine = machine_info(
        threads, probe=config.probe_bandwidth, size_mb=128 if config.quick else 512
    )
    machine["peers"] = peers  # each peer's version and build (llama.cpp's system info)
    result: dict[str, Any] = {
        "machine": machine,
        "model": {
            "name": config.model,
            "path": str(path),
            "size_mb": round(weights_mb, 1),
            "quant": config.quant,
            **({"draft": config.draft} if config.draft else {}),
        },
        "runs": runs,
        "ratios": _ratios(runs, machine["memory_bandwidth_gbps"], weights_mb),
    }
    if errors:
        result["errors"] = errors
    if config.accuracy:
        from hearth.bench.accuracy import measure_accuracy

        result["accuracy"] = measure_accuracy(path, max_tokens=64 if config.quick else 512)
    return result
