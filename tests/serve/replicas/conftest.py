"""A local Ray (started in process on 127.0.0.1, a few logical CPUs) and hearth's app with
two SmolLM2 replicas on it (one thread each), shared by the module's tests."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.config import load_settings
from hearth.serve.app import create_app
from hearth.serve.options import ServeOptions
from hearth.serve.replicas.options import ReplicaOptions
from tests.serve.conftest import MODEL, Listener, serve_apps, stop_apps


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        object_store_memory=100 * 1024**2,
        _node_ip_address="127.0.0.1",
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    yield
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def replicas_server(
    local_ray: None, tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path
) -> Iterator[Listener]:
    from hearth.store import Store

    home = tmp_path_factory.mktemp("replicas-home")
    settings = load_settings({"HEARTH_HOME": str(home), "HEARTH_NUM_THREADS": "1"})
    Store(settings).import_path(smollm2_gguf, MODEL)
    options = ServeOptions(port=0, kv_cache_gb=0.05, max_model_len=1024)
    replicas = ReplicaOptions(num_replicas=2)
    app = create_app(settings, options, preload=[MODEL], replicas=replicas)
    listeners, loop, thread = serve_apps([app])
    yield listeners[0]
    stop_apps(listeners, loop, thread)
