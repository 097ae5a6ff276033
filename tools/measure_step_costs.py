"""Measure the engine's per-step costs on this machine for the fleet simulator
(hearth/sim): prefill time as a function of prompt tokens, and decode-step time as a
function of batch size, at 1 and 2 torch threads. Writes hearth/sim/costs/<name>.json.

    PYTHONPATH=. python tools/measure_step_costs.py MODEL.gguf --name smollm2-135m-2core

Each point is the best of `--repeats` runs (the machine is shared: the minimum is the least
disturbed), prompts are random token ids (no prefix-cache hits)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from datetime import UTC, datetime
from pathlib import Path

PREFILL_TOKENS = (16, 64, 128, 256, 512)
DECODE_BATCHES = (1, 2, 4, 8, 16, 32)
DECODE_STEPS = 8


def _prompt(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(100, 40000) for _ in range(n)]


def _prefill_s(llm, rng: random.Random, n: int, repeats: int) -> float:  # type: ignore[no-untyped-def]
    from hearth.engine.sampling_params import SamplingParams

    best = float("inf")
    for r in range(repeats):
        engine = llm.engine
        engine.add_request(f"p{n}-{r}", _prompt(rng, n), SamplingParams(max_tokens=1))
        start = time.perf_counter()
        while engine.has_unfinished_requests():
            engine.step()
        best = min(best, time.perf_counter() - start)
    return best


def _decode_step_s(llm, rng: random.Random, batch: int, repeats: int) -> float:  # type: ignore[no-untyped-def]
    from hearth.engine.sampling_params import SamplingParams

    best = float("inf")
    engine = llm.engine
    for r in range(repeats):
        params = SamplingParams(max_tokens=DECODE_STEPS + 4, ignore_eos=True, temperature=0)
        for i in range(batch):
            engine.add_request(f"d{batch}-{r}-{i}", _prompt(rng, 16), params)
        engine.step()  # the prefills (16 tokens each: one step at these batch sizes)
        engine.step()
        start = time.perf_counter()
        for _ in range(DECODE_STEPS):
            engine.step()
        best = min(best, (time.perf_counter() - start) / DECODE_STEPS)
        while engine.has_unfinished_requests():
            engine.step()
    return best


def _fit(xs: list[int], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return my - b * mx, b


def measure(model: Path, threads: int, repeats: int) -> dict[str, object]:
    from hearth.engine.llm import LLM

    llm = LLM(model, num_threads=threads, license_use=None, kv_cache_gb=0.1, max_model_len=1024)
    rng = random.Random(threads)
    _prefill_s(llm, rng, 32, 1)  # warm up
    prefill = {n: _prefill_s(llm, rng, n, repeats) for n in PREFILL_TOKENS}
    fixed, per_token = _fit(list(prefill), list(prefill.values()))
    decode = {b: _decode_step_s(llm, rng, b, repeats) for b in DECODE_BATCHES}
    llm.engine.shutdown()
    return {
        "prefill_s": {str(n): round(t, 5) for n, t in prefill.items()},
        "prefill_fixed_s": round(fixed, 5),
        "prefill_per_token_s": round(per_token, 7),
        "decode_step_s": {str(b): round(t, 5) for b, t in decode.items()},
    }


def main() -> None:
    from hearth.config import set_omp_wait_policy

    set_omp_wait_policy()  # as the CLI does, before torch loads (hearth/engine/threads.py)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="best of this many per point")
    args = parser.parse_args()
    out = {
        "model": args.model.name,
        "measured": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, shared with other work",
        "command": f"PYTHONPATH=. python tools/measure_step_costs.py {args.model.name} "
        f"--name {args.name} --repeats {args.repeats}",
        "threads": {str(t): measure(args.model, t, args.repeats) for t in args.threads},
    }
    path = Path(__file__).resolve().parents[1] / "hearth/sim/costs" / f"{args.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
