"""ModelPool (hearth.serve.model_pool) on the real SmolLM2 under two store names: a model
loads on first use and is shared, idle models unload least recently used first to make
room, busy ones never do (CapacityError with Retry-After instead), keep_alive 0 unloads
after the request, pinned models never expire, and a re-pulled name loads the new one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hearth.config import load_settings
from hearth.errors import CapacityError, ModelNotFoundError
from hearth.serve.model_pool import ModelPool
from hearth.serve.options import ServeOptions
from hearth.store import Store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Store:
    settings = load_settings({"HEARTH_HOME": str(tmp_path_factory.mktemp("pool-home"))})
    store = Store(settings)
    store.import_path(smollm2_gguf, "a:1")
    store.import_path(smollm2_gguf, "b:1")
    return store


def _pool(store: Store, **options: object) -> ModelPool:
    opts = ServeOptions(kv_cache_gb=0.02, max_model_len=256, **options)  # type: ignore[arg-type]
    return ModelPool(store.settings, opts, store)


def test_lru_unload_and_busy_models_stay(store: Store) -> None:
    async def run() -> None:
        pool = _pool(store, max_loaded_models=1)
        try:
            async with pool.use("a:1") as a:
                assert a.name == "a:1" and a.size_bytes > 0 and a.active == 1
                assert (await pool.get("a:1")) is a  # loaded once, shared
                # a is busy: loading b would pass max_loaded_models=1
                with pytest.raises(CapacityError, match="max_loaded_models=1") as info:
                    await pool.get("b:1")
                assert info.value.retry_after == 5
            assert a.active == 0
            b = await pool.get("b:1")  # a is idle now: unloaded to make room
            assert [m.name for m in pool.loaded()] == ["b:1"] and b.name == "b:1"
            with pytest.raises(ModelNotFoundError):
                await pool.get("c:1")
        finally:
            await pool.close()
        assert pool.loaded() == []

    asyncio.run(run())


def test_keep_alive_zero_unloads_after_the_request_and_pins_stay(store: Store) -> None:
    async def run() -> None:
        pool = _pool(store, keep_alive_s=300)
        try:
            async with pool.use("a:1", keep_alive_s=0) as a:
                assert a.keep_alive_s == 0 and a.expires_at is not None
            assert "a:1" not in pool.models
            pinned = await pool.get("b:1", pin=True)
            pinned.keep_alive_s = 0
            assert pinned.expires_at is None and not pool._expired(pinned)
            assert await pool.unload("b:1") and not await pool.unload("b:1")
        finally:
            await pool.close()

    asyncio.run(run())
