"""EngineReplica: one Ray Serve replica of a generation model — an LLM behind AsyncEngine in
its own process. `generate` streams (through `handle.options(stream=True)`): first a
ReplicaTag naming the replica (the ingress's `x-hearth-replica`), then the engine's
RequestOutputs, last the engine's metrics snapshot (how /metrics learns each replica's
counters without calling every replica). Cancelling the stream aborts the request in the
engine. `check_health` is Ray Serve's periodic health check. Imported only by Ray (it
pickles the class by reference) and by cluster.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.config import Settings
from hearth.engine.metrics import EngineMetrics
from hearth.engine.outputs import RequestOutput
from hearth.engine.sampling_params import SamplingParams


@dataclass(frozen=True)
class ReplicaTag:
    """The first item of every stream: which replica answers, and its process id."""

    replica: str
    pid: int


@dataclass(frozen=True)
class ReplicaModel:
    """What a replica loads: the model's file, its store name, how to load it."""

    path: Path
    name: str
    dtype: str = "float32"
    quant: str = "auto"
    kv_cache_gb: float | None = None
    max_model_len: int | None = None


class EngineReplica:
    def __init__(self, model: ReplicaModel, settings: Settings, num_threads: int) -> None:
        import torch
        from ray import serve

        from hearth.engine.async_engine import AsyncEngine
        from hearth.engine.llm import LLM

        self.llm = LLM(
            model.path,
            dtype=getattr(torch, model.dtype),
            quant=model.quant,
            num_threads=num_threads,
            license_use=None,  # the ingress ran the license gate ("serve") before starting us
            name=model.name,
            kv_cache_gb=model.kv_cache_gb,
            max_model_len=model.max_model_len,
            settings=settings,
        )
        self.engine = AsyncEngine(self.llm.engine)
        self.tag = ReplicaTag(serve.get_replica_context().replica_id.unique_id, os.getpid())

    async def generate(
        self,
        prompt: list[int],
        params: SamplingParams,
        request_id: str,
        block_hashes: list[str] | None = None,  # read by the router, not here
    ) -> AsyncIterator[ReplicaTag | RequestOutput | EngineMetrics]:
        yield self.tag
        gen = self.engine.generate(prompt, params, request_id)
        async with contextlib.aclosing(gen):  # type: ignore[type-var]
            async for out in gen:
                yield out
        yield await asyncio.to_thread(self.engine.metrics)

    async def describe(self) -> dict[str, Any]:
        """The replica's facts (which one, its pid, its context and KV pool)."""
        engine = self.llm.engine
        return {
            "replica": self.tag.replica,
            "pid": self.tag.pid,
            "max_model_len": self.llm.max_model_len,
            "kv_cache_bytes": engine.kv_cache_bytes,
            "kv_cache_tokens": engine.block_manager.num_blocks * engine.block_manager.block_size,
        }

    async def check_health(self) -> None:
        """Ray Serve's periodic check: the engine answers a metrics snapshot (it takes the
        engine's lock, so a wedged step loop fails it) within the check's timeout."""
        await asyncio.to_thread(self.engine.metrics)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.engine.shutdown()
