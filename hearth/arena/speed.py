"""A short speed measurement of one loaded model on this machine: time to the first token
of a fixed prompt (TTFT) and the decode rate after it, one request at a time (what one
person at a chat window sees). Talks to the engine only."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hearth.engine.sampling_params import SamplingParams

PROMPT = "Write a short paragraph about the history of bread."


@dataclass(frozen=True)
class Speed:
    ttft_s: float
    decode_tokens_per_s: float
    num_tokens: int


def measure(llm: Any, new_tokens: int = 32, repeats: int = 2) -> Speed:
    """The best of `repeats` runs (the first also warms caches and kernels)."""
    best: Speed | None = None
    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, ignore_eos=True)
    for i in range(repeats):
        # a different opening each run: a cached prefix would flatter the TTFT
        message = {"role": "user", "content": f"({i + 1}) {PROMPT}"}
        prompt = list(llm.tokenizer.encode_chat([message]))
        engine = llm.engine
        rid = f"speed-{i}"
        start = time.perf_counter()
        first: float | None = None
        count = 0
        engine.add_request(rid, prompt, params)
        while engine.has_unfinished_requests():
            for out in engine.step():
                if out.request_id != rid:
                    continue
                new = len(out.outputs[0].delta_token_ids)
                if new and first is None:
                    first = time.perf_counter()
                count += new
        end = time.perf_counter()
        assert first is not None
        rate = (count - 1) / (end - first) if count > 1 and end > first else 0.0
        run = Speed(first - start, rate, count)
        if best is None or run.decode_tokens_per_s > best.decode_tokens_per_s:
            best = run
    assert best is not None
    return best
