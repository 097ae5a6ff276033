"""ModelPool: the models the server holds. A model loads on first use (through the license
gate, use="serve"; the gate runs again for every request after the policy file changed, so
`hearth policy set commercial true` stops a loaded non-commercial model at once), stays while requests use it, and unloads after `keep_alive` idle seconds
(default 5 min; negative = never; 0 = right after the request), or earlier, least recently
used first, when loading another would pass `max_loaded_models` or the memory budget — as
Ollama does. Models named at startup are pinned (never unloaded by time).

All bookkeeping happens on the server's event loop; loading and unloading run in worker
threads. Never touches tensors: loading goes through `hearth.engine.llm.LLM`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.config import Settings
from hearth.errors import (
    CapacityError,
    ConflictError,
    InvalidNameError,
    InvalidParameterError,
    ModelNotFoundError,
)
from hearth.licenses.policy import PolicyStamp, policy_stamp
from hearth.serve.options import ServeOptions
from hearth.serve.served_adapters import AdapterSpec, ServedAdapters

if TYPE_CHECKING:
    from hearth.engine.async_engine import AsyncEngine
    from hearth.engine.llm import LLM
    from hearth.engine.metrics import EngineMetrics
    from hearth.engine.pipeline_parallel import PPConfig
    from hearth.engine.tensor_parallel import TPConfig
    from hearth.store import ModelRecord, Store

log = logging.getLogger("hearth.serve")
GIB = 1024**3
_DTYPE_BYTES = {"auto": 4, "float32": 4, "bfloat16": 2, "float16": 2}


_USES = {
    "generation": "chat and completions (/v1/chat/completions, /api/chat, /api/generate)",
    "embedding": "embeddings (/v1/embeddings, /api/embed)",
    "rerank": "reranking (/v1/rerank)",
}


def check_kind(record: ModelRecord, kinds: tuple[str, ...]) -> None:
    """InvalidParameterError (400) naming what the model is for when it is not of `kinds`."""
    if record.kind in kinds:
        return
    wanted = " or ".join(kinds)
    raise InvalidParameterError(
        "model",
        f"{record.name} is {'an' if record.kind[0] in 'ae' else 'a'} {record.kind} model: use "
        f"it for {_USES[record.kind]}; this endpoint needs a {wanted} model",
    )


@dataclass(eq=False)
class LoadedModel:
    """One model in memory: its store record, the loaded LLM (tokenizer, config, engine) and
    the async engine the routes stream from."""

    name: str
    record: ModelRecord
    llm: LLM
    engine: AsyncEngine
    size_bytes: int
    load_duration_s: float
    keep_alive_s: float
    pinned: bool = False
    policy_stamp: PolicyStamp = None  # the policy file the license gate last passed under
    active: int = 0
    last_used: float = field(default_factory=time.monotonic)
    lora: str | None = None  # a LoRA adapter's view of its base: its requests use it

    @property
    def tokenizer(self) -> Any:
        return self.llm.tokenizer

    @property
    def max_model_len(self) -> int:
        return self.llm.max_model_len

    @property
    def expires_at(self) -> datetime | None:
        """When it unloads if nothing uses it again (None: never)."""
        if self.pinned or self.keep_alive_s < 0:
            return None
        idle_for = 0.0 if self.active else time.monotonic() - self.last_used
        try:
            return datetime.now(UTC) + timedelta(seconds=max(self.keep_alive_s - idle_for, 0))
        except (OverflowError, ValueError):  # beyond year 9999: as good as never
            return None


class ModelPool:
    def __init__(self, settings: Settings, options: ServeOptions, store: Store) -> None:
        self.settings = settings
        self.options = options
        self.store = store
        self.models: dict[str, LoadedModel] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._reaper: asyncio.Task[None] | None = None
        self.adapters = ServedAdapters()  # LoRA adapters by name (served_adapters.py)
        for name, path, base in options.loras:
            self.adapters.add(AdapterSpec(name, store.get(base).name, Path(path)))

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Start unloading expired models (call on the server's loop)."""
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        for name in list(self.models):
            await self.unload(name)

    async def _reap(self, every_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            for model in list(self.models.values()):
                if self._expired(model):
                    await self.unload(model.name)

    def _expired(self, model: LoadedModel) -> bool:
        if model.active or model.pinned or model.keep_alive_s < 0:
            return False
        return time.monotonic() - model.last_used >= model.keep_alive_s

    # -- use ------------------------------------------------------------------------------
    async def record(self, name: str) -> ModelRecord:
        """The store record of `name` (InvalidNameError / ModelNotFoundError otherwise)."""
        return await asyncio.to_thread(self.store.get, name)

    @contextlib.asynccontextmanager
    async def use(
        self, name: str, keep_alive_s: float | None = None, kinds: tuple[str, ...] = ("generation",)
    ) -> AsyncIterator[LoadedModel]:
        """The loaded model `name` (loading it first), held while the block runs. A given
        keep_alive replaces the model's (as Ollama does), counted from the end of the use.
        A model of another kind than `kinds` (generation, embedding, rerank) is refused
        before it loads. An adapter's name gives its base, seen as the adapter."""
        adapter = self.adapters.get(name)
        if adapter is not None:
            async with self.use(adapter.base, keep_alive_s, kinds) as base:
                yield replace(base, name=name, lora=name)
            return
        try:
            record = await self.record(name)
        except ModelNotFoundError as exc:
            if not self.adapters.specs:
                raise
            raise ModelNotFoundError(exc.name, f"{exc}; {self.adapters.listing()}") from exc
        check_kind(record, kinds)
        model = await self.get(name, keep_alive_s)
        model.active += 1
        try:
            yield model
        finally:
            model.active -= 1
            model.last_used = time.monotonic()
            if self._expired(model) and self.models.get(model.name) is model:
                await self.unload(model.name)

    async def get(
        self, name: str, keep_alive_s: float | None = None, pin: bool = False
    ) -> LoadedModel:
        record = await self.record(name)
        key = record.name
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            model = self.models.get(key)
            if model is not None and model.record.digest != record.digest:
                await self.unload(key)  # re-pulled under the same name: load the new one
                model = None
            if model is not None and model.llm.broken:
                # a tensor- or pipeline-parallel worker died (its requests got 503): load it afresh
                log.warning("%s: %s; loading it again", key, model.llm.broken)
                pin = pin or model.pinned
                await self.unload(key)
                model = None
            if model is None:
                model = await self._load(record, keep_alive_s)
                self.models[key] = model
        await self._recheck_license(model)
        if keep_alive_s is not None:
            model.keep_alive_s = keep_alive_s
        model.pinned = model.pinned or pin
        model.last_used = time.monotonic()
        return model

    async def _recheck_license(self, model: LoadedModel) -> None:
        """The license gate again when the policy file changed since it last passed (one
        stat per request otherwise); PolicyError (403) when the policy now forbids it."""
        stamp = policy_stamp(self.settings)
        if stamp == model.policy_stamp:
            return
        await asyncio.to_thread(self._enforce, model.record)
        model.policy_stamp = stamp

    def _enforce(self, record: ModelRecord) -> list[str]:
        from hearth.licenses import detection_from_stored, enforce

        detection = detection_from_stored(record.license_id, record.license_signals)
        return enforce(detection, "serve", self.settings, record.digest)

    async def _load(self, record: ModelRecord, keep_alive_s: float | None) -> LoadedModel:
        estimate = self._estimate_bytes(record)
        await self._make_room(estimate)
        start = time.perf_counter()
        stamp = policy_stamp(self.settings)  # before the gate: a change during loading rechecks
        llm, warnings = await asyncio.to_thread(self._load_sync, record)
        for warning in warnings:
            log.warning("%s: %s", record.name, warning)
        from hearth.engine.async_embedder import AsyncEmbedder
        from hearth.engine.async_engine import AsyncEngine

        took = time.perf_counter() - start
        log.info("loaded %s in %.1f s", record.name, took)
        # an embedding / rerank model answers `embed` (and `rerank`) as the engine does; the
        # routes that generate never reach it (check_kind)
        engine: Any = (
            AsyncEngine(llm.engine) if llm.embedder is None else AsyncEmbedder(llm.embedder)
        )
        return LoadedModel(
            name=record.name,
            record=record,
            llm=llm,
            engine=engine,
            size_bytes=_loaded_bytes(llm) or estimate,
            load_duration_s=took,
            keep_alive_s=self.options.keep_alive_s if keep_alive_s is None else keep_alive_s,
            policy_stamp=stamp,
        )

    def _load_sync(self, record: ModelRecord) -> tuple[LLM, list[str]]:
        import torch

        from hearth.engine.llm import LLM

        warnings = self._enforce(record)
        # the blob's own path: a name never reaches the filesystem as a path
        llm = LLM(
            self.store.locate(record.name).path,
            dtype=None if self.options.dtype == "auto" else getattr(torch, self.options.dtype),
            quant=self.options.quant,
            license_use=None,  # checked above as "serve"
            name=record.name,  # its catalog defaults go by the name, not the blob path
            kv_cache_gb=self.options.kv_cache_gb,
            max_model_len=self.options.max_model_len,
            speculative=self.options.speculative,
            draft_model=self.options.draft_model,
            settings=self.settings,
            loras=self.adapters.of_base(record.name),
            max_loras=self.options.max_loras,
            max_lora_rank=self.options.max_lora_rank,
            tensor_parallel=self._tensor_parallel(),
            pipeline_parallel=self._pipeline_parallel(),
        )
        llm.model_name = record.name
        return llm, warnings

    def _tensor_parallel(self) -> TPConfig:
        from hearth.engine.tensor_parallel import TPConfig

        return TPConfig(
            self.options.tensor_parallel,
            self.options.nnodes,
            self.settings.master_addr,
            self.settings.master_port,
        )

    def _pipeline_parallel(self) -> PPConfig:
        from hearth.engine.pipeline_parallel import PPConfig

        return PPConfig(
            self.options.pipeline_parallel,
            self.options.nnodes,
            self.settings.master_addr,
            self.settings.master_port,
        )

    def _estimate_bytes(self, record: ModelRecord) -> int:
        weights = record.parameter_count * _DTYPE_BYTES[self.options.dtype]
        return int(weights + (self.options.kv_cache_gb or 0) * GIB)

    async def _make_room(self, needed: int) -> None:
        """Unload idle models, least recently used first, until `needed` more bytes and one
        more model fit; CapacityError when the busy ones alone leave no room."""
        budget = int(self.options.memory_budget_gb * GIB)

        def full() -> bool:
            over_count = 0 < self.options.max_loaded_models <= len(self.models)
            used = sum(m.size_bytes for m in self.models.values())
            return over_count or (budget > 0 and used + needed > budget)

        while full():
            idle = [m for m in self.models.values() if not m.active and not m.pinned]
            if not idle:
                raise CapacityError(
                    f"no room to load another model: {len(self.models)} loaded and busy "
                    f"(max_loaded_models={self.options.max_loaded_models}, memory budget "
                    f"{self.options.memory_budget_gb:g} GB); retry when a request finishes, or "
                    "raise --max-loaded-models / --memory-budget-gb",
                    retry_after=5,
                )
            victim = min(idle, key=lambda m: m.last_used)
            log.info("unloading %s to make room", victim.name)
            await self.unload(victim.name)

    async def unload(self, name: str) -> bool:
        """Unload `name` now (requests still running on it are aborted)."""
        model = self.models.pop(name, None)
        if model is None:
            return False
        await asyncio.to_thread(model.engine.shutdown)
        log.info("unloaded %s", name)
        return True

    # -- LoRA adapters ------------------------------------------------------------------
    async def load_adapter(self, name: str, path: str, base: str | None) -> AdapterSpec:
        """Register adapter `name` (a PEFT folder or a GGUF LoRA file) on `base` (default:
        the one generation model loaded), loading the base if needed; checked against it at
        once."""
        if base is None:
            bases = [m.name for m in self.loaded() if m.record.kind == "generation"]
            if len(bases) != 1:
                raise InvalidParameterError(
                    "base_model",
                    "base_model: name the model the adapter runs on ("
                    + (f"loaded: {', '.join(bases)}" if bases else "none is loaded")
                    + ")",
                )
            base = bases[0]
        if self.adapters.get(name) is None and await self._is_stored(name):
            raise ConflictError(f"{name!r} is a stored model's name; give the adapter another")
        spec = AdapterSpec(name, (await self.record(base)).name, Path(path))
        self.adapters.add(spec)  # first: a request for it may come while it loads
        try:
            async with self.use(spec.base) as model:
                await asyncio.to_thread(model.engine.add_lora, name, spec.path)
        except BaseException:
            self.adapters.pop(name)
            raise
        return spec

    async def unload_adapter(self, name: str) -> None:
        """Forget adapter `name`; requests already using it finish first."""
        spec = self.adapters.pop(name)
        model = self.models.get(spec.base)
        if model is not None:
            await asyncio.to_thread(model.engine.remove_lora, name)

    async def _is_stored(self, name: str) -> bool:
        try:
            await self.record(name)
        except (ModelNotFoundError, InvalidNameError):
            return False
        return True

    def loaded(self) -> list[LoadedModel]:
        return sorted(self.models.values(), key=lambda m: m.name)

    def snapshots(self) -> list[tuple[str, EngineMetrics]]:
        """Engine counters of every loaded model (takes each engine's lock briefly: call
        from a worker thread)."""
        return [(m.name, m.engine.metrics()) for m in list(self.models.values())]


def _loaded_bytes(llm: LLM) -> int:
    """Weights + KV cache actually allocated."""
    total = 0
    if llm.embedder is not None:
        return sum(p.numel() * p.element_size() for p in llm.embedder.network.parameters())
    with contextlib.suppress(Exception):
        model: Any = llm.engine.runner.model
        total += sum(p.numel() * p.element_size() for p in model.parameters())
        total += sum(t.numel() * t.element_size() for t in model.buffers())
        for cache in llm.engine.runner.kv_caches:
            total += cache.key.numel() * cache.key.element_size()
            total += cache.value.numel() * cache.value.element_size()
    return total
