"""ReplicaPool: the ModelPool of `hearth serve --replicas`. A generation model loads here as
before (the license gate, the tokenizer, the chat template and the defaults the routes use)
and, in place of a local engine, gets a Ray Serve application of replicas that each load
it (cluster.start_application) and a ReplicaEngine that streams from them. Embedding and
rerank models stay local. Unloading a model deletes its application; closing the pool stops
the Ray it started."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from hearth.config import Settings
from hearth.engine.metrics import EngineMetrics
from hearth.serve.model_pool import LoadedModel, ModelPool
from hearth.serve.options import ServeOptions
from hearth.serve.replicas.cluster import RayConnection, connect, start_application
from hearth.serve.replicas.deployment import ReplicaModel
from hearth.serve.replicas.engine import ReplicaEngine
from hearth.serve.replicas.options import ReplicaOptions

if TYPE_CHECKING:
    from fastapi import FastAPI

    from hearth.serve.metrics import ServerMetrics
    from hearth.store import ModelRecord, Store


class ReplicaPool(ModelPool):
    def __init__(
        self,
        settings: Settings,
        options: ServeOptions,
        store: Store,
        replicas: ReplicaOptions,
        connection: RayConnection | None = None,
    ) -> None:
        super().__init__(settings, options, store)
        self.replicas = replicas
        self.connection = connection

    async def _load(self, record: ModelRecord, keep_alive_s: float | None) -> LoadedModel:
        model = await super()._load(record, keep_alive_s)
        if record.kind != "generation":
            return model
        # the replicas run the model: the engine loaded here only answers questions about
        # its shape (context, KV pool), never a request
        await asyncio.to_thread(model.engine.shutdown)
        if self.connection is None:
            self.connection = await asyncio.to_thread(connect, self.replicas)
        spec = ReplicaModel(
            path=self.store.locate(record.name).path,
            name=record.name,
            dtype=self.options.dtype,
            quant=self.options.quant,
            kv_cache_gb=self.options.kv_cache_gb,
            max_model_len=self.options.max_model_len,
        )
        handle = await asyncio.to_thread(start_application, spec, self.settings, self.replicas)
        block_size = model.llm.engine.block_manager.block_size
        model.engine = ReplicaEngine(handle, record.name, block_size)  # type: ignore[assignment]
        return model

    async def close(self) -> None:
        await super().close()
        if self.connection is not None:
            await asyncio.to_thread(self.connection.close)
            self.connection = None

    def replica_snapshots(self) -> list[tuple[str, str, EngineMetrics]]:
        """(model, replica, counters) of every replica that reported."""
        rows = []
        for model in list(self.models.values()):
            if isinstance(model.engine, ReplicaEngine):
                for replica, m in list(model.engine.replica_metrics.items()):
                    rows.append((model.name, replica, m))
        return rows


def attach(app: FastAPI, pool: ReplicaPool, metrics: ServerMetrics) -> None:
    """The replica parts of the app: the response header and the per-replica gauges."""
    from hearth.serve.replicas.header import ReplicaHeaderMiddleware
    from hearth.serve.replicas.metrics import ReplicaCollector

    app.add_middleware(ReplicaHeaderMiddleware)
    metrics.registry.register(ReplicaCollector(pool.replica_snapshots))
