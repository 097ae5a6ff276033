"""Measure the engine's step costs on this machine for the fleet simulator (hearth/sim):
runs a calibration workload through a real engine, times every step with what it computed
(hearth.sim.replica.step_shape: prompt tokens, decode rows, attention work) and fits
hearth.sim.costs.StepCosts to them. Writes hearth/sim/costs/<name>.json (or --out).

    PYTHONPATH=. python tools/measure_step_costs.py MODEL.gguf --name smollm2-135m-q4_1-2core

`--setups 1x2 2x1` (the default) measures 1 torch thread with 2 engines running the
workload at once (as 2 one-thread replicas share this machine) and 2 threads with one
engine: each engine is its own process, and the steps of all of them are pooled. The
workload mixes what the scheduler makes of real traffic: prompts alone (16 to 400
tokens), a burst of chats over shared prompts (prefill chunks and decode rows in one
step, up to 24 rows), and decode rows at a context of ~300 tokens. ~30 s per setup on an
idle 2-core machine."""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Sample = tuple[int, int, int, int, float]  # prefill tokens, decode rows, pairs, keys, seconds


def _prompt(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(100, 40000) for _ in range(n)]


def calibrate(model: Path, threads: int, seed: int) -> tuple[list[Sample], int]:
    """The timed steps of the calibration workload on one engine, and its KV blocks."""
    from hearth.engine.llm import LLM
    from hearth.engine.sampling_params import SamplingParams
    from hearth.sim.replica import step_shape

    llm = LLM(model, num_threads=threads, license_use=None, kv_cache_gb=0.1, max_model_len=1024)
    engine = llm.engine
    scheduler = engine.scheduler
    schedule = scheduler.schedule
    shapes: list[Any] = []

    def recording_schedule() -> Any:  # the step's shape, taken before the step runs
        out = schedule()
        shapes.append(step_shape(out) if out else None)
        return out

    scheduler.schedule = recording_schedule  # type: ignore[method-assign]
    rng = random.Random(seed)
    samples: list[Sample] = []
    names = iter(range(10**9))

    def run(prompts: list[list[int]], max_tokens: int, record: bool = True) -> None:
        params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0)
        for p in prompts:
            engine.add_request(f"c{next(names)}", p, params)
        while engine.has_unfinished_requests():
            start = time.perf_counter()
            engine.step()
            took = time.perf_counter() - start
            shape = shapes.pop()
            if record and shape is not None:
                s = shape
                samples.append(
                    (s.prefill_tokens, s.decode_rows, s.prefill_pairs, s.decode_keys, took)
                )

    run([_prompt(rng, 48)], 4, record=False)  # warm up
    for n in (16, 64, 160, 400):  # prompts alone
        run([_prompt(rng, n)], 2)
    for _ in range(2):  # a burst over shared prompts, as chats over system prompts
        systems = [_prompt(rng, 64) for _ in range(3)]
        run([systems[i % 3] + _prompt(rng, 8 + i % 16) for i in range(24)], 24)
    shared = _prompt(rng, 288)  # decode rows that read long contexts
    run([shared + _prompt(rng, 12) for _ in range(8)], 16)
    run([_prompt(rng, 24) for _ in range(4)], 12)  # small decode batches
    engine.shutdown()
    return samples, engine.block_manager.num_blocks


def measure(model: Path, threads: int, engines: int) -> dict[str, Any]:
    """`engines` processes run the workload at once with `threads` threads each."""
    from hearth.sim.costs import StepCosts, StepShape

    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / f"{i}.json" for i in range(engines)]
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, str(model), "--worker", str(threads), str(i), str(out)]
            )
            for i, out in enumerate(outs)
        ]
        for proc in procs:
            if proc.wait() != 0:
                raise SystemExit(f"calibration worker failed (exit {proc.returncode})")
        results = [json.loads(out.read_text()) for out in outs]
    samples: list[Sample] = [tuple(s) for r in results for s in r["samples"]]  # type: ignore[misc]
    timed = [(StepShape(*s[:4]), s[4]) for s in samples]
    costs = StepCosts.fit(timed)
    errors = sorted(abs(costs.step_s(shape) / t - 1) for shape, t in timed)
    return {
        "engines": engines,
        "kv_blocks": results[0]["num_blocks"],  # at kv_cache_gb=0.1, as tools/scale_bench.py
        "costs": costs.to_dict(),
        "num_steps": len(samples),
        "fit_error_p50": round(errors[len(errors) // 2], 3),
        "fit_error_p90": round(errors[int(len(errors) * 0.9)], 3),
        "steps": [[*s[:4], round(s[4], 5)] for s in samples],
    }


def _compact(text: str) -> str:
    """Each list of numbers on one line (a step's shape and time), not one per line."""
    return re.sub(r"\[\s+([-\d.e,\s]+?)\s+\]", lambda m: "[" + " ".join(m[1].split()) + "]", text)


def _setup(text: str) -> tuple[int, int]:
    threads, _, engines = text.partition("x")
    try:
        return int(threads), int(engines or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use THREADSxENGINES, e.g. 1x2") from None


def main() -> None:
    from hearth.config import set_omp_wait_policy

    set_omp_wait_policy()  # as the CLI does, before torch loads (hearth/engine/threads.py)
    if len(sys.argv) == 6 and sys.argv[2] == "--worker":
        model, _, threads, seed, out = sys.argv[1:]
        samples, num_blocks = calibrate(Path(model), int(threads), int(seed))
        Path(out).write_text(json.dumps({"samples": samples, "num_blocks": num_blocks}))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--name", default="measured")
    parser.add_argument("--setups", type=_setup, nargs="+", default=[(1, 2), (2, 1)])
    parser.add_argument(
        "--out", type=Path, default=None, help="default: hearth/sim/costs/NAME.json"
    )
    args = parser.parse_args()
    setups = " ".join(f"{t}x{e}" for t, e in args.setups)
    out = {
        "model": args.model.name,
        "measured": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        "command": f"PYTHONPATH=. python tools/measure_step_costs.py {args.model.name} "
        f"--name {args.name} --setups {setups}",
        "threads": {str(t): measure(args.model, t, e) for t, e in args.setups},
    }
    path = (
        args.out or Path(__file__).resolve().parents[1] / "hearth/sim/costs" / f"{args.name}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_compact(json.dumps(out, indent=1)) + "\n")
    for t, entry in out["threads"].items():  # type: ignore[attr-defined]
        brief = {k: v for k, v in entry.items() if k != "steps"}
        print(f"{t} thread(s): {json.dumps(brief)}", flush=True)


if __name__ == "__main__":
    main()
