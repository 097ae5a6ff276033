"""The workload: chats that open with one of a few shared system prompts (as an
organisation's assistants do), each with its own user turn and answer length."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class SimRequest:
    """One chat turn: arrives at `arrival_s`; its prompt is the shared prefix `prefix_id`
    (`prefix_tokens` long) then `unique_tokens` of its own; it generates `output_tokens`.
    `prompt`: its real token ids, where the trace comes from a real workload (then the
    lengths are what its prefix shares with other chats' and the rest)."""

    id: int
    arrival_s: float
    prefix_id: int
    prefix_tokens: int
    unique_tokens: int
    output_tokens: int
    prompt: tuple[int, ...] | None = None

    @property
    def prompt_tokens(self) -> int:
        return self.prefix_tokens + self.unique_tokens

    def token_ids(self) -> tuple[int, ...]:
        """The prompt's ids: the real ones, or synthetic ones equal across chats exactly
        over their shared prefix (prefix ids >= 0, each chat's own ids < 0)."""
        if self.prompt is not None:
            return self.prompt
        shared = tuple(self.prefix_id * 1_000_003 + k for k in range(self.prefix_tokens))
        own = tuple(-(self.id * 1_000_003 + k + 1) for k in range(self.unique_tokens))
        return shared + own


def shared_prefix_trace(
    num_requests: int,
    num_prefixes: int,
    *,
    prefix_tokens: int = 160,
    unique_tokens: int = 24,
    output_tokens: int = 32,
    rate_per_s: float | None = None,
    seed: int = 0,
) -> list[SimRequest]:
    """`num_requests` chats over `num_prefixes` system prompts. `rate_per_s`: Poisson
    arrivals at that rate, each chat's system prompt drawn at random; None: all at once (a
    burst), prefix i taken by every num_prefixes-th chat (the real measurement's even
    mix)."""
    if num_requests < 1 or num_prefixes < 1:
        raise ValueError("num_requests and num_prefixes must be >= 1")
    rng = random.Random(seed)
    now = 0.0
    requests = []
    for i in range(num_requests):
        prefix = i % num_prefixes
        if rate_per_s is not None:
            now += rng.expovariate(rate_per_s)
            prefix = rng.randrange(num_prefixes)
        requests.append(SimRequest(i, now, prefix, prefix_tokens, unique_tokens, output_tokens))
    return requests
