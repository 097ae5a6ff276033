"""The event loop: requests arrive (the router places each on a replica), replicas run
steps back to back while they have work; the result is the fleet's output tokens per second
over the run, time to first token percentiles and the prefix-cache hit rate (prompt tokens
served from cache / all prompt tokens, as hearth_prefix_cache_hit_rate counts them)."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

from hearth.sim.costs import StepCosts
from hearth.sim.replica import SimReplica
from hearth.sim.routing import Router
from hearth.sim.trace import SimRequest


@dataclass(frozen=True)
class SimResult:
    num_replicas: int
    routing: str
    num_requests: int
    duration_s: float
    tokens_per_s: float
    ttft_p50_s: float
    ttft_p99_s: float
    hit_rate: float


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)]


def simulate(
    trace: Sequence[SimRequest],
    num_replicas: int,
    costs: StepCosts,
    routing: str = "prefix",
    *,
    kv_tokens: int = 16384,
    seed: int = 0,
) -> SimResult:
    replicas = [SimReplica(costs, kv_tokens=kv_tokens) for _ in range(num_replicas)]
    router = Router(routing, num_replicas, seed=seed)
    # (time, order, replica or -1 for an arrival, request index)
    events: list[tuple[float, int, int, int]] = []
    order = 0
    for i, request in enumerate(trace):
        events.append((request.arrival_s, order, -1, i))
        order += 1
    heapq.heapify(events)
    ttfts: list[float] = []
    output_tokens = 0
    end = 0.0

    def start_step(index: int, now: float) -> None:
        nonlocal order
        duration = replicas[index].plan_step()
        replicas[index].busy = duration > 0
        if duration > 0:
            heapq.heappush(events, (now + duration, order, index, -1))
            order += 1

    while events:
        now, _, index, request_index = heapq.heappop(events)
        if index < 0:
            request = trace[request_index]
            index = router.choose(request, replicas)
            replicas[index].admit(request)
            if not replicas[index].busy:
                start_step(index, now)
            continue
        for seq in replicas[index].finish_step(now):
            assert seq.first_token_s is not None
            ttfts.append(seq.first_token_s - seq.request.arrival_s)
            output_tokens += seq.generated
            end = now
        start_step(index, now)
    start = min(r.arrival_s for r in trace)
    duration = end - start
    prompt = sum(r.prompt_tokens + r.hit_tokens for r in replicas)
    return SimResult(
        num_replicas=num_replicas,
        routing=routing,
        num_requests=len(trace),
        duration_s=duration,
        tokens_per_s=output_tokens / duration if duration > 0 else 0.0,
        ttft_p50_s=percentile(ttfts, 50),
        ttft_p99_s=percentile(ttfts, 99),
        hit_rate=sum(r.hit_tokens for r in replicas) / prompt if prompt else 0.0,
    )
