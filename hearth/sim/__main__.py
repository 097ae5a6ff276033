"""`python -m hearth.sim`: predicted throughput and TTFT over replica counts and routings.

    python -m hearth.sim --replicas 1 10 100 1000 --routing round-robin prefix

Load scales with the fleet: `--rate-per-replica` chats per second per replica over
`--prefixes-per-replica` system prompts each, for `--seconds` of arrivals. `--burst N`
sends N chats at once instead (the shape of the real 1- and 2-replica measurement)."""

from __future__ import annotations

import argparse

from hearth.sim.costs import DEFAULT_COSTS, StepCosts
from hearth.sim.routing import ROUTINGS
from hearth.sim.simulate import simulate
from hearth.sim.trace import shared_prefix_trace


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m hearth.sim", description=__doc__.splitlines()[0])
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 10, 100, 1000])
    p.add_argument("--routing", nargs="+", choices=ROUTINGS, default=["round-robin", "prefix"])
    p.add_argument(
        "--costs", default=DEFAULT_COSTS, help="a name under hearth/sim/costs/, or a .json file"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads per replica")
    p.add_argument("--rate-per-replica", type=float, default=1.0)
    p.add_argument("--prefixes-per-replica", type=float, default=4.0)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--burst", type=int, default=None)
    p.add_argument("--prefixes", type=int, default=None, help="system prompts (burst mode)")
    p.add_argument("--prefix-tokens", type=int, default=160)
    p.add_argument("--unique-tokens", type=int, default=24)
    p.add_argument("--output-tokens", type=int, default=32)
    p.add_argument("--kv-tokens", type=int, default=16384, help="prefix cache per replica")
    args = p.parse_args(argv)
    costs = StepCosts.load(args.costs, args.threads)
    shape = {
        "prefix_tokens": args.prefix_tokens,
        "unique_tokens": args.unique_tokens,
        "output_tokens": args.output_tokens,
    }
    print(
        f"{'replicas':>8} {'routing':>11} {'requests':>8} {'tok/s':>10} "
        f"{'TTFT p50':>9} {'TTFT p99':>9} {'hit rate':>8}"
    )
    for n in args.replicas:
        if args.burst:
            trace = shared_prefix_trace(args.burst, args.prefixes or 4, **shape)
        else:
            rate = args.rate_per_replica * n
            prefixes = max(1, round(args.prefixes_per_replica * n))
            trace = shared_prefix_trace(
                max(1, round(rate * args.seconds)), prefixes, rate_per_s=rate, **shape
            )
        for routing in args.routing:
            r = simulate(trace, n, costs, routing, kv_tokens=args.kv_tokens)
            print(
                f"{n:>8} {routing:>11} {r.num_requests:>8} {r.tokens_per_s:>10.1f} "
                f"{r.ttft_p50_s:>8.2f}s {r.ttft_p99_s:>8.2f}s {r.hit_rate:>8.1%}"
            )


if __name__ == "__main__":
    main()
