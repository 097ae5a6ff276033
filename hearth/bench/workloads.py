"""The bench scenarios as token-id workloads (every engine gets the very same ids), and the
statistics every engine's timings reduce to. Knows nothing of engines.

  decode      one stream: 128-token prompt, 128 output tokens, greedy
  concurrent  1, 4, 16, 64 requests at once: prompts 64-512 tokens, outputs 64-256 (seeded
              per level, so any subset of levels can run on its own)
  prefix      32 requests sharing a 1,000-token system prompt (+ a short question each),
              with and without prefix caching; a first request has seen the system prompt
  spec        speculative decoding off and on (spec_workloads.py; not in the default set)
`quick` shrinks every size so the whole bench runs in seconds (the test suite uses it)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SCENARIOS = ("decode", "concurrent", "prefix")
SCENARIOS = (*DEFAULT_SCENARIOS, "spec")
CONCURRENCY = (1, 4, 16, 64)
QUICK_CONCURRENCY = (1, 4)


@dataclass(frozen=True)
class Workload:
    """prompts[i] runs with max_tokens[i] output tokens (EOS ignored, greedy). warmup: a
    prompt run to completion before the clock starts (the prefix scenario's first visitor)."""

    scenario: str
    concurrency: int
    prompts: list[list[int]]
    max_tokens: list[int]
    prefix_caching: bool = True
    warmup: list[int] | None = None
    speculative: str = "off"  # hearth's EngineConfig.speculative for this run

    def __post_init__(self) -> None:
        if len(self.prompts) != len(self.max_tokens) or not self.prompts:
            raise ValueError("prompts and max_tokens must be non-empty and of equal length")

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Workload:
        return cls(**data)


def _ids(rng: random.Random, n: int, vocab: int) -> list[int]:
    # plain ids well inside the vocabulary, away from the special tokens at its ends
    return [rng.randrange(200, vocab - 200) for _ in range(n)]


def make_workloads(
    scenarios: tuple[str, ...],
    vocab_size: int,
    quick: bool = False,
    seed: int = 0,
    concurrency: tuple[int, ...] | None = None,
) -> list[Workload]:
    """concurrency: which levels of the concurrent scenario run (None: 1, 4, 16, 64, or
    1, 4 when quick). A level's requests are the same whichever other levels run."""
    levels = concurrency or (QUICK_CONCURRENCY if quick else CONCURRENCY)
    if any(c < 1 for c in levels):
        raise ValueError(f"concurrency levels must be >= 1, got {levels}")
    out: list[Workload] = []
    if "decode" in scenarios:
        rng = random.Random(f"{seed}-decode")
        n_in, n_out = (16, 8) if quick else (128, 128)
        out.append(Workload("decode", 1, [_ids(rng, n_in, vocab_size)], [n_out]))
    if "concurrent" in scenarios:
        for c in sorted(set(levels)):
            # a generator per scenario and level: `--concurrency 16` alone runs the very
            # requests the full bench's level 16 runs, so split runs add up to the full one
            level_rng = random.Random(f"{seed}-concurrent-{c}")
            prompts, outs = concurrent_prompts(level_rng, c, vocab_size, quick)
            out.append(Workload("concurrent", c, prompts, outs))
    if "prefix" in scenarios:
        rng = random.Random(f"{seed}-prefix")
        n_sys, n_req, n_q, n_out = (64, 4, 4, 4) if quick else (1000, 32, 16, 16)
        system = _ids(rng, n_sys, vocab_size)
        prompts = [system + _ids(rng, n_q, vocab_size) for _ in range(n_req)]
        warm = system + _ids(rng, n_q, vocab_size)
        for caching in (True, False):
            out.append(Workload("prefix", n_req, prompts, [n_out] * n_req, caching, warmup=warm))
    return out


def concurrent_prompts(
    rng: random.Random, c: int, vocab_size: int, quick: bool
) -> tuple[list[list[int]], list[int]]:
    """One level of the concurrent scenario: c prompts and their output lengths."""
    (lo_in, hi_in), (lo_out, hi_out) = ((8, 32), (4, 8)) if quick else ((64, 512), (64, 256))
    prompts = [_ids(rng, rng.randint(lo_in, hi_in), vocab_size) for _ in range(c)]
    return prompts, [rng.randint(lo_out, hi_out) for _ in range(c)]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


@dataclass
class RequestTiming:
    """Seconds since the workload started: when the request was sent, and when each of its
    output tokens arrived."""

    sent: float
    token_times: list[float] = field(default_factory=list)
    failed: bool = False


def summarize(
    engine: str, workload: Workload, timings: list[RequestTiming], duration_s: float
) -> dict[str, Any]:
    """One `runs` entry of the bench JSON."""
    ttft = [(t.token_times[0] - t.sent) * 1000 for t in timings if t.token_times]
    itl = [
        (b - a) * 1000
        for t in timings
        for a, b in zip(t.token_times, t.token_times[1:], strict=False)
    ]
    output_tokens = sum(len(t.token_times) for t in timings)

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v, 2)

    run: dict[str, Any] = {
        "engine": engine,
        "scenario": workload.scenario,
        "concurrency": workload.concurrency,
        "num_requests": len(workload.prompts),
        "failed_requests": sum(t.failed for t in timings),
        "prompt_tokens": sum(len(p) for p in workload.prompts),
        "output_tokens": output_tokens,
        "duration_s": round(duration_s, 3),
        "output_tokens_per_s": round(output_tokens / duration_s, 2) if duration_s > 0 else None,
        "ttft_ms_p50": ms(percentile(ttft, 50)),
        "ttft_ms_p99": ms(percentile(ttft, 99)),
        "itl_ms_p50": ms(percentile(itl, 50)),
        "itl_ms_p99": ms(percentile(itl, 99)),
    }
    if workload.scenario == "prefix":
        run["prefix_caching"] = workload.prefix_caching
    if workload.scenario.startswith("spec"):
        run["speculative"] = workload.speculative
    return run
