"""Validate the fleet simulator (hearth/sim) against real runs, in one go on this machine:
measure the step costs (tools/measure_step_costs.py), run the real burst of
tools/scale_bench.py (32 chats over 4 system prompts, 32 tokens each) on 1 engine x 2
threads and 2 replicas x 1 thread (prefix and random routing, local Ray), simulate the
same burst (the real prompts' token ids) with the costs just measured, and print / write a
table of sim vs real with % errors for tokens/s, TTFT p50 / p99 and prefix-cache hit rate.

    PYTHONPATH=. python tools/validate_sim.py MODEL.gguf [--out sim_validation.json]

~5 minutes on an idle 2-core machine (costs ~1 min, each real setup ~0.5-1.5 min). Run it
on a quiet machine: the costs and the runs must see the same machine speed."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
SETUPS = {  # scale_bench setup -> (replicas, threads per replica, routing)
    "single": (1, 2, "prefix"),
    "prefix": (2, 1, "prefix"),
    "random": (2, 1, "random"),
}
METRICS = ("tokens_per_s", "ttft_p50_s", "ttft_p99_s", "prefix_cache_hit_rate")
RANDOM_SEEDS = 20  # random routing: the sim's mean over this many draws


def _run(cmd: list[str], timeout: float) -> str:
    env = {**os.environ, "PYTHONPATH": str(TOOLS.parent)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])}... failed:\n{done.stderr[-3000:]}")
    return done.stdout


def real_setup(model: Path, setup: str, max_tokens: int) -> dict[str, Any]:
    cmd = [sys.executable, str(TOOLS / "scale_bench.py"), str(model), "--setups", setup]
    out = _run([*cmd, "--max-tokens", str(max_tokens)], timeout=400)
    return json.loads(next(line for line in out.splitlines()[::-1] if line.startswith("{")))


def simulate_setup(
    setup: str, costs_file: dict[str, Any], prompts: list[list[int]], max_tokens: int
) -> dict[str, float]:
    from hearth.sim.costs import StepCosts
    from hearth.sim.simulate import simulate
    from hearth.sim.trace import SimRequest

    replicas, threads, routing = SETUPS[setup]
    entry = costs_file["threads"][str(threads)]
    costs = StepCosts(**entry["costs"])
    kv_tokens = entry.get("kv_blocks", 291) * 16  # 291: SmolLM2's pool at kv_cache_gb=0.1
    trace = []
    for i, ids in enumerate(prompts):
        peer = prompts[(i + 4) % len(prompts)]  # the next chat over the same system prompt
        shared = next((k for k, (a, b) in enumerate(zip(ids, peer, strict=False)) if a != b), 0)
        trace.append(
            SimRequest(i, 0.0, i % 4, shared, len(ids) - shared, max_tokens, prompt=tuple(ids))
        )
    seeds = range(RANDOM_SEEDS) if routing == "random" else range(1)
    runs = [simulate(trace, replicas, costs, routing, kv_tokens=kv_tokens, seed=s) for s in seeds]
    return {
        "tokens_per_s": sum(r.tokens_per_s for r in runs) / len(runs),
        "ttft_p50_s": sum(r.ttft_p50_s for r in runs) / len(runs),
        "ttft_p99_s": sum(r.ttft_p99_s for r in runs) / len(runs),
        "prefix_cache_hit_rate": sum(r.hit_rate for r in runs) / len(runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, default=Path("sim_validation.json"))
    parser.add_argument(
        "--costs", type=Path, default=None, help="reuse a costs file, skip measuring"
    )
    parser.add_argument("--setups", nargs="+", choices=SETUPS, default=list(SETUPS))
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    started = time.perf_counter()
    load = {"start": os.getloadavg()}
    costs_path = args.costs
    if costs_path is None:
        costs_path = args.out.with_name(f"{args.out.stem}_costs.json")  # kept: commit it
        print("measuring step costs...", flush=True)
        cmd = [sys.executable, str(TOOLS / "measure_step_costs.py"), str(args.model)]
        print(_run([*cmd, "--out", str(costs_path)], timeout=400), flush=True)
    costs_file = json.loads(costs_path.read_text())
    rows = []
    for setup in args.setups:
        print(f"real run: {setup}...", flush=True)
        real = real_setup(args.model, setup, args.max_tokens)
        sim = simulate_setup(setup, costs_file, real["prompt_token_ids"], args.max_tokens)
        replicas, threads, _ = SETUPS[setup]
        row: dict[str, Any] = {"setup": setup, "replicas x threads": f"{replicas}x{threads}"}
        for m in METRICS:
            row[m] = {
                "sim": round(sim[m], 3),
                "real": real[m],
                "error_pct": round((sim[m] / real[m] - 1) * 100, 1) if real[m] else None,
            }
        rows.append(row)
        print(_line(row), flush=True)
    load["end"] = os.getloadavg()
    report = {
        "model": args.model.name,
        "seconds": round(time.perf_counter() - started, 1),
        "load_average": load,
        "costs": {t: e["costs"] for t, e in costs_file["threads"].items()},
        "rows": rows,
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print("\nsetup    " + "  ".join(f"{m:>26}" for m in METRICS) + "   (sim / real, error)")
    for row in rows:
        print(_line(row))
    print(f"took {report['seconds']} s, load {load}; wrote {args.out}")


def _line(row: dict[str, Any]) -> str:
    cells = []
    for m in METRICS:
        c = row[m]
        err = "n/a" if c["error_pct"] is None else f"{c['error_pct']:+.0f}%"
        cells.append(f"{c['sim']:>8.3g} / {c['real']:<8.3g} {err:>6}")
    return f"{row['setup']:<8} " + "  ".join(f"{c:>26}" for c in cells)


if __name__ == "__main__":
    main()
