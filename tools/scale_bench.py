"""The replica target of issue 29, measured: 32 chats over 4 shared system prompts sent at
once (streamed with the official `openai` client) to 1 engine with 2 threads, and to 2
replicas with 1 thread each on a local Ray, routed by prefix and at random. Prints, per
setup, aggregate output tokens/s, TTFT p50/p99 and the prefix-cache hit rate, and the
prompt shape the simulator needs (docs/scale.md has the numbers).

    PYTHONPATH=. python tools/scale_bench.py MODEL.gguf [--setups single prefix random]"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

MODEL = "smollm2:135m"
SYSTEMS = [
    "You are the help desk of a small bank. Answer questions about accounts, cards and "
    "transfers politely, in two or three sentences, and never ask for a password. " * 2,
    "You are a travel agent for trains in Europe. Suggest routes, say how long they take "
    "and what they cost, and mention night trains where they exist. " * 2,
    "You are a cooking assistant. Give recipes with exact quantities in grams, the steps "
    "numbered, and a note on what can be prepared a day ahead. " * 2,
    "You are a patient maths tutor for teenagers. Explain each step, check the answer at "
    "the end, and offer one similar exercise to practise with. " * 2,
]
QUESTIONS = [
    "How do I start?",
    "What should I know first?",
    "Can you help me today?",
    "What is the most common mistake?",
    "Give me a short example.",
    "What does it cost?",
    "How long does it take?",
    "Is there a simpler way?",
]
CHATS = [(SYSTEMS[i % 4], QUESTIONS[i // 4]) for i in range(32)]  # the burst, in sending order
NO_EOS = {"0": -100, "2": -100}  # every answer runs to max_tokens: equal work in each setup


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)  # nearest rank, as hearth.sim.simulate.percentile
    return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)]


def _serve(app: Any) -> tuple[str, uvicorn.Server, threading.Thread]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.1)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return f"http://{host}:{port}", server, thread


async def _chat(client: Any, system: str, question: str, max_tokens: int) -> tuple[float, int]:
    start = time.perf_counter()
    first = None
    count = 0
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
        max_tokens=max_tokens,
        temperature=0,
        logit_bias=NO_EOS,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and first is None:
            first = time.perf_counter() - start
        if chunk.usage is not None:
            count = chunk.usage.completion_tokens
    assert first is not None
    return first, count


async def _burst(url: str, max_tokens: int) -> dict[str, float]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=600)
    start = time.perf_counter()
    results = await asyncio.gather(*(_chat(client, s, q, max_tokens) for s, q in CHATS))
    took = time.perf_counter() - start
    ttfts = [t for t, _ in results]
    tokens = sum(n for _, n in results)
    return {
        "seconds": round(took, 2),
        "output_tokens": tokens,
        "tokens_per_s": round(tokens / took, 1),
        "ttft_p50_s": round(_percentile(ttfts, 50), 2),
        "ttft_p99_s": round(_percentile(ttfts, 99), 2),
    }


def run_setup(setup: str, model_file: Path, max_tokens: int) -> dict[str, Any]:
    from hearth.config import load_settings
    from hearth.serve.app import create_app
    from hearth.serve.options import ServeOptions
    from hearth.serve.replicas.options import ReplicaOptions
    from hearth.store import Store

    threads = "2" if setup == "single" else "1"
    settings = load_settings({"HEARTH_HOME": tempfile.mkdtemp(), "HEARTH_NUM_THREADS": threads})
    Store(settings).import_path(model_file, MODEL)
    options = ServeOptions(port=0, kv_cache_gb=0.1, max_model_len=1024, access_log=False)
    replicas = None if setup == "single" else ReplicaOptions(num_replicas=2, routing=setup)
    app = create_app(settings, options, preload=[MODEL], replicas=replicas)
    url, server, thread = _serve(app)
    pool = app.state.hearth.pool
    try:
        asyncio.run(_warm_up(url, max_tokens))
        before = _hits(pool)
        result = asyncio.run(_burst(url, max_tokens))
        after = _hits(pool)
        hit = after[0] - before[0]
        computed = after[1] - before[1]
        result["prefix_cache_hit_rate"] = round(hit / (hit + computed), 3)
        tokenizer = next(iter(pool.models.values())).tokenizer
        result["prompt_shape"] = _shape(tokenizer)
        result["prompt_token_ids"] = [  # the burst's prompts, for the simulator's trace
            tokenizer.encode_chat(
                [{"role": "system", "content": s}, {"role": "user", "content": q}],
                add_generation_prompt=True,
            )
            for s, q in CHATS
        ]
    finally:
        server.should_exit = True
        thread.join(60)
    return {"setup": setup, **result}


async def _warm_up(url: str, max_tokens: int) -> None:
    """Prompts outside the workload, enough to reach every replica (first-run costs)."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=600)
    warm = [f"Warm-up {i}: " + "tell me something. " * 12 for i in range(4)]
    await asyncio.gather(*(_chat(client, w, "Hello?", max_tokens) for w in warm))


def _hits(pool: Any) -> tuple[int, int]:
    snapshots = pool.snapshots()
    return (
        sum(m.prefix_cache_hit_tokens for _, m in snapshots),
        sum(m.prompt_tokens_total for _, m in snapshots),
    )


def _shape(tokenizer: Any) -> dict[str, int]:
    """Tokens of one chat's prompt and of the part chats with one system prompt share."""
    a, b = (
        tokenizer.encode_chat(
            [{"role": "system", "content": SYSTEMS[0]}, {"role": "user", "content": q}],
            add_generation_prompt=True,
        )
        for q in QUESTIONS[:2]
    )
    shared = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    return {"prompt_tokens": len(a), "shared_tokens": shared}


def main() -> None:
    from hearth.config import set_omp_wait_policy

    set_omp_wait_policy()  # as the CLI does, before torch loads (hearth/engine/threads.py)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--setups", nargs="+", default=["single", "prefix", "random"])
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    if len(args.setups) > 1:
        # one process per setup: Ray Serve keeps one router per deployment in a process,
        # so a second application of the same name would reuse the first one's routing
        for setup in args.setups:
            cmd = [sys.executable, __file__, str(args.model), "--setups", setup]
            subprocess.run([*cmd, "--max-tokens", str(args.max_tokens)], check=True)
        return
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if any(s != "single" for s in args.setups):
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=100 * 1024**2,
            _node_ip_address="127.0.0.1",
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    for setup in args.setups:
        print(json.dumps(run_setup(setup, args.model, args.max_tokens)), flush=True)


if __name__ == "__main__":
    main()
