"""Run workloads through hearth's engine (LLMEngine, continuous batching): every request of
a workload is added at once and the engine is stepped until all finish, timing each
token's arrival. Knows nothing of the peers or of printing."""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

import torch

from hearth.bench.workloads import RequestTiming, Workload, summarize


def run_hearth(
    path: Path,
    workloads: list[Workload],
    quant: str = "auto",
    max_num_seqs: int = 64,
    draft: str | None = None,
) -> tuple[list[dict[str, Any]], float]:
    """The runs, and the KV pool's size in MB: sized to hold the largest workload's
    requests all at once (no preemption), in blocks of 16. draft: the draft model of the
    workloads that speculate with "draft"."""
    from hearth.config import load_settings
    from hearth.engine.engine_config import EngineConfig
    from hearth.engine.llm import build_engine
    from hearth.engine.sampling_params import SamplingParams
    from hearth.model.backend import BackendConfig
    from hearth.model.quant_load import load_decoder
    from hearth.tokenizer.loading import load_tokenizer

    settings = load_settings()
    backend = BackendConfig.of(settings)
    loaded = load_decoder(path, quant, backend=backend)
    tokenizer = load_tokenizer(path)
    from hearth.model.kv_cache import kv_cache_bytes_per_block

    per_block = kv_cache_bytes_per_block(loaded.weights.config, 16, loaded.dtype)
    blocks = max(
        sum(-(-(len(p) + n) // 16) + 1 for p, n in zip(w.prompts, w.max_tokens, strict=True))
        for w in workloads
    )
    kv_cache_gb = (blocks + 8) * per_block / 1024**3
    longest = (
        max(len(p) + n for w in workloads for p, n in zip(w.prompts, w.max_tokens, strict=True))
        + 16
    )
    engines: dict[tuple[bool, str], Any] = {}  # at most one: each holds a KV pool
    loaded_draft = None
    if draft is not None and any(w.speculative == "draft" for w in workloads):
        from hearth.engine.spec.draft_loading import load_draft

        loaded_draft = load_draft(draft, str(path), tokenizer, quant, torch.float32, settings)

    def engine_for(caching: bool, speculative: str = "off") -> Any:
        if (caching, speculative) not in engines:
            engines.clear()  # one KV pool at a time
            gc.collect()  # (an engine in a reference cycle would keep its pool until then)
            config = EngineConfig(
                kv_cache_gb=kv_cache_gb,
                max_num_seqs=max_num_seqs,
                max_model_len=min(longest, loaded.weights.config.max_position_embeddings),
                enable_prefix_caching=caching,
                seed=0,
                speculative=speculative,
            )
            engines[caching, speculative] = build_engine(
                loaded.weights.config, loaded.decoder, tokenizer, config, loaded.dtype,
                loaded_draft,
            )  # fmt: skip
        return engines[caching, speculative]

    def params(n: int) -> Any:
        return SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True)

    runs = []
    with torch.inference_mode():
        # build the kernels, allocate, fault in the weights before anything is timed
        _drive(engine_for(True), [workloads[0].prompts[0][:16]], [4], params)
        for w in workloads:
            engine = None  # the last pool must go before engine_for allocates another
            engine = engine_for(w.prefix_caching, w.speculative)
            if w.warmup is not None:
                _drive(engine, [w.warmup], [1], params)
            before = engine.metrics()
            start = time.perf_counter()
            timings = _drive(engine, w.prompts, w.max_tokens, params, start)
            runs.append(summarize("hearth", w, timings, time.perf_counter() - start))
            if w.speculative != "off":
                after = engine.metrics()
                runs[-1]["draft_n"] = after.spec_draft_tokens_total - before.spec_draft_tokens_total
                runs[-1]["draft_n_accepted"] = (
                    after.spec_accepted_tokens_total - before.spec_accepted_tokens_total
                )
    return runs, kv_cache_gb * 1024


def _drive(
    engine: Any,
    prompts: list[list[int]],
    max_tokens: list[int],
    params: Any,
    start: float | None = None,
) -> list[RequestTiming]:
    return drive_requests(engine, prompts, [params(n) for n in max_tokens], start)[0]


def drive_requests(
    engine: Any, prompts: list[list[int]], params: list[Any], start: float | None = None
) -> tuple[list[RequestTiming], list[list[int]]]:
    """Every request added at once (each with its own SamplingParams), the engine stepped
    until all finish: each request's timing and output ids, in the order given."""
    start = time.perf_counter() if start is None else start
    ids = [f"bench-{time.monotonic_ns()}-{i}" for i in range(len(prompts))]
    timings: dict[str, RequestTiming] = {}
    tokens: dict[str, list[int]] = {}
    for rid, prompt, request_params in zip(ids, prompts, params, strict=True):
        engine.add_request(rid, prompt, request_params)
        timings[rid] = RequestTiming(time.perf_counter() - start)
    while engine.has_unfinished_requests():
        outputs = engine.step()
        now = time.perf_counter() - start
        for out in outputs:
            t = timings[out.request_id]
            if out.error is not None:
                t.failed = True
                continue
            tokens[out.request_id] = list(out.outputs[0].token_ids)
            new = len(tokens[out.request_id]) - len(t.token_times)
            t.token_times.extend([now] * new)
    return [timings[rid] for rid in ids], [tokens.get(rid, []) for rid in ids]
