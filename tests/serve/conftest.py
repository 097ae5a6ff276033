"""Serve test fixtures: real uvicorn servers on 127.0.0.1 (free ports) in one background
event loop, shared by every serve test module (the SmolLM2 model loads once per session):

- `served.main`: SmolLM2 (real weights, imported into a temporary HEARTH_HOME store) loaded
  and pinned, no API keys;
- `served.limited`: a second listener on the same model pool with max_running=1,
  max_queue=0 (for 503 + Retry-After);
- `served.keyed`: another HEARTH_HOME with API keys in its database (auth on), no models;
- `start_app`: start one more app for a single test (stopped after it).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from hearth.config import Settings, load_settings
from hearth.serve.app import create_app
from hearth.serve.options import ServeOptions
from hearth.serve.state import ServerState

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("HEARTH_TEST_CACHE", REPO / ".hearth-test-cache"))
MODEL = "smollm2:135m"


@dataclass
class Listener:
    app: FastAPI
    server: uvicorn.Server
    task: asyncio.Task[None]

    @property
    def url(self) -> str:
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def state(self) -> ServerState:
        state: ServerState = self.app.state.hearth
        return state


@dataclass
class Served:
    main: Listener
    limited: Listener
    keyed: Listener
    settings: Settings
    keyed_settings: Settings
    loop: asyncio.AbstractEventLoop
    model_path: Path

    def call(self, coro):  # type: ignore[no-untyped-def]
        """Run a coroutine on the servers' loop (the pool's loop) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=300)


def serve_apps(
    apps: list[FastAPI],
) -> tuple[list[Listener], asyncio.AbstractEventLoop, threading.Thread]:
    """Start uvicorn for each app, in order, on one loop in a daemon thread."""
    loop = asyncio.new_event_loop()
    listeners: list[Listener] = []
    ready = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        try:
            for app in apps:
                config = uvicorn.Config(
                    app,
                    host="127.0.0.1",
                    port=0,
                    log_level="warning",
                    lifespan="on",
                    timeout_graceful_shutdown=2,
                )
                server = uvicorn.Server(config)
                server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
                task = loop.create_task(server.serve())
                while not server.started:
                    if server.should_exit:
                        raise RuntimeError("uvicorn did not start")
                    await asyncio.sleep(0.05)
                listeners.append(Listener(app, server, task))
        except BaseException as exc:
            failure.append(exc)
        ready.set()

    thread = threading.Thread(
        target=lambda: (loop.create_task(main()), loop.run_forever()), daemon=True
    )
    thread.start()
    ready.wait(600)
    if failure:
        raise failure[0]
    return listeners, loop, thread


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Iterator[Served]:
    from hearth.serve.keys import create_key
    from hearth.store import Store

    home = tmp_path_factory.mktemp("serve-home")
    settings = load_settings({"HEARTH_HOME": str(home)})
    Store(settings).import_path(smollm2_gguf, MODEL)
    options = ServeOptions(
        port=0,
        # greedy answers asserted here are the de-quantized reference's (the default, auto,
        # runs bf16 activations, which pick other first tokens for some prompts)
        quant="none",
        kv_cache_gb=0.15,
        max_model_len=1024,
        keep_alive_s=300,
    )
    main = create_app(settings, options, preload=[MODEL])
    limited_options = ServeOptions(port=0, max_running=1, max_queue=0)
    limited = create_app(settings, limited_options, pool=main.state.hearth.pool)
    keyed_home = tmp_path_factory.mktemp("serve-keyed-home")
    keyed_settings = load_settings({"HEARTH_HOME": str(keyed_home)})
    create_key(keyed_settings, "ci")
    keyed = create_app(keyed_settings, ServeOptions(port=0, rate_limit_per_minute=1000))
    listeners, loop, thread = serve_apps([main, limited, keyed])
    yield Served(*listeners, settings, keyed_settings, loop, smollm2_gguf)
    stop_apps(listeners, loop, thread)


def stop_apps(
    listeners: list[Listener], loop: asyncio.AbstractEventLoop, thread: threading.Thread
) -> None:
    for listener in reversed(listeners):
        listener.server.should_exit = True

    async def finished() -> None:  # the servers' shutdown unloads the pool's engines
        await asyncio.wait([listener.task for listener in listeners], timeout=30)

    asyncio.run_coroutine_threadsafe(finished(), loop).result(timeout=60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=30)
    loop.close()


@pytest.fixture
def start_app() -> Iterator[Callable[[FastAPI], Listener]]:
    """Start one more app (its own loop, a free port) for the test; stopped afterwards."""
    started: list[tuple[list[Listener], asyncio.AbstractEventLoop, threading.Thread]] = []

    def start(app: FastAPI) -> Listener:
        started.append(serve_apps([app]))
        return started[-1][0][0]

    yield start
    for listeners, loop, thread in started:
        stop_apps(listeners, loop, thread)
