"""Idle KV memory goes back to the OS: after a burst of requests the engine releases the
pages of its free blocks (RSS drops), keeps the most recent prefix cache, and the released
blocks serve later requests exactly as before (they read as the zeros of a fresh pool)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable

import pytest
import torch

from hearth.engine.async_engine import AsyncEngine
from hearth.engine.kv_memory import release_blocks, resident_bytes
from hearth.engine.llm_engine import LLMEngine
from hearth.engine.sampling_params import SamplingParams

GREEDY = SamplingParams(temperature=0, max_tokens=20, ignore_eos=True)
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise: Linux only")


def _run(engine: LLMEngine, prompts: list[list[int]]) -> list[list[int]]:
    for i, p in enumerate(prompts):
        engine.add_request(f"r{i}-{time.monotonic_ns()}", p, GREEDY)
    outs: dict[str, list[int]] = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                outs[out.request_id] = out.outputs[0].token_ids
    return [outs[k] for k in sorted(outs, key=lambda k: int(k[1 : k.index("-")]))]


@linux
def test_released_blocks_read_as_zeros_and_serve_again(
    make_engine: Callable[..., LLMEngine],
) -> None:
    engine = make_engine(kv_cache_gb=0.02)
    prompts = [[5 + i, 6, 7, 8, 9, 10 + i] * 5 for i in range(8)]
    before = _run(engine, prompts)
    released = engine.release_idle_memory()
    assert released > 0
    key = engine.runner.kv_caches[0].key
    free = engine.block_manager.uncached_free_blocks()
    # the whole pages of free blocks are gone (fresh zeros); a page shared with a block
    # that is kept (a run's ends) keeps its data
    assert float((key[free] != 0).float().mean()) < 0.5
    assert _run(engine, prompts) == before


@linux
def test_release_drops_resident_memory() -> None:
    caches = [
        type("C", (), {"key": torch.zeros(256, 16, 8, 64), "value": torch.zeros(256, 16, 8, 64)})()
    ]
    for c in caches:
        c.key.fill_(1.0)
        c.value.fill_(1.0)
    touched = resident_bytes()
    assert release_blocks(caches, range(256)) >= 2 * 256 * 16 * 8 * 64 * 4 - 2 * 4096
    assert resident_bytes() < touched - 12 * 1024 * 1024  # 16 MiB were resident
    # only the partial pages at the tensor's two unaligned ends keep their values
    assert float(caches[0].key.sum()) <= 2 * 4096 / 4


def test_the_async_engine_releases_when_idle(make_engine: Callable[..., LLMEngine]) -> None:
    engine = make_engine()
    calls: list[int] = []
    release = engine.release_idle_memory

    def counted() -> int:
        calls.append(1)
        return release()

    engine.release_idle_memory = counted  # type: ignore[method-assign]
    front = AsyncEngine(engine, idle_release_s=0.2)
    try:

        async def one() -> None:
            async for _ in front.generate([5, 6, 7], GREEDY):
                pass

        asyncio.run(one())
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            time.sleep(0.05)
        assert calls == [1]
        time.sleep(0.5)
        assert calls == [1]  # once per idle period, not every 0.2 s
        asyncio.run(one())
        deadline = time.monotonic() + 10
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert calls == [1, 1]
    finally:
        front.shutdown()
