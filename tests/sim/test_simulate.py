"""The fleet simulator: the engine's scheduling and prefix cache as modelled, and what the
routings do to hit rate, throughput and TTFT."""

from __future__ import annotations

import pytest

from hearth.sim.costs import StepCosts
from hearth.sim.replica import SimReplica
from hearth.sim.routing import Router
from hearth.sim.simulate import percentile, simulate
from hearth.sim.trace import SimRequest, shared_prefix_trace

COSTS = StepCosts(0.02, 0.0005, 0.0015, 0.0001, 0.00005)


def test_a_burst_over_one_prefix_computes_it_once() -> None:
    replica = SimReplica(COSTS)
    for i in range(8):
        replica.admit(
            SimRequest(i, 0.0, prefix_id=0, prefix_tokens=100, unique_tokens=20, output_tokens=4)
        )
    now, done = 0.0, []
    while replica.in_flight:
        now += replica.plan_step()
        done += replica.finish_step(now)
    assert len(done) == 8 and all(s.generated == 4 for s in done)
    # the first computes 120 tokens; the other 7 reuse 96 (6 whole blocks) of the prefix
    assert replica.hit_tokens == 7 * 96 and replica.prompt_tokens == 120 + 7 * 24
    first = min(done, key=lambda s: s.first_token_s or 0)
    assert first.request.id == 0  # the others waited for its prefix


def test_trace_mixes_prefixes_evenly_and_arrivals_are_poisson() -> None:
    burst = shared_prefix_trace(32, 4)
    assert [r.prefix_id for r in burst[:5]] == [0, 1, 2, 3, 0]
    assert {r.arrival_s for r in burst} == {0.0}
    steady = shared_prefix_trace(2000, 8, rate_per_s=100.0)
    assert steady[-1].arrival_s == pytest.approx(20.0, rel=0.1)
    with pytest.raises(ValueError):
        shared_prefix_trace(0, 4)


def test_prefix_routing_keeps_hits_that_round_robin_loses() -> None:
    # 20 replicas, 80 system prompts, a cache that holds 4 of them per replica
    trace = shared_prefix_trace(1200, 80, rate_per_s=40.0, output_tokens=8)
    rr = simulate(trace, 20, COSTS, "round-robin", kv_tokens=4 * 160)
    prefix = simulate(trace, 20, COSTS, "prefix", kv_tokens=4 * 160)
    assert prefix.hit_rate > rr.hit_rate + 0.3
    assert prefix.ttft_p50_s < rr.ttft_p50_s
    assert prefix.num_requests == rr.num_requests == 1200


def test_more_replicas_more_throughput_on_a_burst() -> None:
    trace = shared_prefix_trace(64, 4)
    one = simulate(trace, 1, COSTS, "prefix")
    two = simulate(trace, 2, COSTS, "prefix")
    assert two.tokens_per_s > one.tokens_per_s * 1.3
    assert two.ttft_p99_s < one.ttft_p99_s


def test_router_choices() -> None:
    replicas = [SimReplica(COSTS) for _ in range(3)]
    router = Router("round-robin", 3)
    request = SimRequest(0, 0.0, 0, 10, 10, 1)
    assert [router.choose(request, replicas) for _ in range(4)] == [1, 2, 0, 1]
    prefix = Router("prefix", 3, imbalance_threshold=2)
    owner = prefix.choose(request, replicas)
    for _ in range(3):
        replicas[owner].admit(request)
    assert prefix.choose(request, replicas) != owner  # 3 more in flight than the others
    with pytest.raises(ValueError, match="routing must be one of"):
        Router("fastest", 3)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
