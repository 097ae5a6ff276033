"""Autoscaling on queue depth: one replica that may grow to two, under more requests in
flight than its target, becomes two (Ray Serve's autoscaling_config, set by hearth)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hearth.config import load_settings
from hearth.serve.app import create_app
from hearth.serve.options import ServeOptions
from hearth.serve.replicas.options import ReplicaOptions
from tests.serve.conftest import Listener, serve_apps, stop_apps

NAME = "smollm2:autoscaled"


@pytest.fixture(scope="module")
def scaling_server(
    local_ray: None, tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path
) -> Iterator[Listener]:
    from hearth.store import Store

    home = tmp_path_factory.mktemp("autoscale-home")
    settings = load_settings({"HEARTH_HOME": str(home), "HEARTH_NUM_THREADS": "1"})
    Store(settings).import_path(smollm2_gguf, NAME)
    options = ServeOptions(port=0, kv_cache_gb=0.05, max_model_len=1024)
    replicas = ReplicaOptions(
        num_replicas=1, min_replicas=1, max_replicas=2, target_ongoing_requests=1
    )
    app = create_app(settings, options, preload=[NAME], replicas=replicas)
    listeners, loop, thread = serve_apps([app])
    yield listeners[0]
    stop_apps(listeners, loop, thread)


def _running() -> int:
    from ray import serve

    app = serve.status().applications["hearth-smollm2-autoscaled"]
    return int(app.deployments["engine"].replica_states.get("RUNNING", 0))


@pytest.mark.slow
def test_queue_depth_adds_a_replica(scaling_server: Listener) -> None:
    assert _running() == 1
    stop = threading.Event()

    def keep_busy(i: int) -> None:
        body = {
            "model": NAME,
            "prompt": f"Story number {i}: once upon a time",
            "max_tokens": 64,
            "logit_bias": {"0": -100, "2": -100},
        }
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                client.post(scaling_server.url + "/v1/completions", json=body)

    workers = [threading.Thread(target=keep_busy, args=(i,)) for i in range(6)]
    for w in workers:
        w.start()
    try:
        deadline = time.monotonic() + 150
        while _running() < 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert _running() == 2
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=120)
