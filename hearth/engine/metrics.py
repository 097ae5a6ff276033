"""Engine counters the server exports (Prometheus) and `hearth run --verbose` prints:
sequences running / waiting / preempted, KV blocks used / free / cached, prefix-cache hit
tokens, prefill and decode throughput. Plain numbers; knows nothing of HTTP."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, fields


@dataclass
class EngineMetrics:
    """A snapshot. Throughputs are over the last `window_s` seconds of steps."""

    num_running: int = 0
    num_waiting: int = 0
    num_preemptions: int = 0  # lifetime
    num_blocks_total: int = 0
    num_blocks_used: int = 0
    num_blocks_free: int = 0
    num_blocks_cached: int = 0
    kv_cache_bytes: int = 0  # the pool's size
    kv_cache_tokens: int = 0  # tokens it holds
    prefix_cache_hit_tokens: int = 0  # lifetime
    prompt_tokens_total: int = 0  # lifetime, computed (not served from cache)
    generation_tokens_total: int = 0  # lifetime
    prefill_tokens_per_s: float = 0.0
    decode_tokens_per_s: float = 0.0
    # structured output (lifetime): constrained sequences, grammar compile and mask time
    constrained_requests: int = 0
    grammar_compile_seconds: float = 0.0
    grammar_mask_steps: int = 0
    grammar_mask_seconds: float = 0.0
    # speculative decoding (lifetime): tokens drafted, and those the model accepted
    spec_draft_tokens_total: int = 0
    spec_accepted_tokens_total: int = 0
    # LoRA: adapters registered, and requests each adapter got (lifetime)
    lora_adapters_loaded: int = 0
    lora_requests_total: dict[str, int] = field(default_factory=dict)

    def __add__(self, other: EngineMetrics) -> EngineMetrics:
        """Field by field (several engines counted as one model, e.g. replicas): numbers
        add, and counts by key add key by key."""
        out = EngineMetrics()
        for f in fields(EngineMetrics):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, dict):
                summed = dict(mine)
                for key, value in theirs.items():
                    summed[key] = summed.get(key, 0) + value
                setattr(out, f.name, summed)
            else:
                setattr(out, f.name, mine + theirs)
        return out


@dataclass
class ThroughputMeter:
    """Tokens per second over a sliding window of steps."""

    window_s: float = 10.0
    _steps: deque[tuple[float, float, int, int]] = field(default_factory=deque)

    def record(self, start: float, end: float, prefill_tokens: int, decode_tokens: int) -> None:
        self._steps.append((start, end, prefill_tokens, decode_tokens))
        while self._steps and self._steps[0][1] < end - self.window_s:
            self._steps.popleft()

    def rates(self, now: float | None = None) -> tuple[float, float]:
        """(prefill, decode) tokens per second of busy time in the window."""
        now = time.perf_counter() if now is None else now
        steps = [s for s in self._steps if s[1] >= now - self.window_s]
        busy = sum(end - start for start, end, _, _ in steps)
        if busy <= 0:
            return 0.0, 0.0
        return sum(s[2] for s in steps) / busy, sum(s[3] for s in steps) / busy
