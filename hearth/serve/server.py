"""Running the app: the bind-safety check (any address but loopback needs an API key in the
database, or the server refuses to start and says how to make one), the models named at
start checked (they exist, the license policy allows serving them) before anything listens,
the sockets (the port, and Ollama's port too with `--ollama-port` when no other server holds
it), the startup banner (URLs, models with their context and KV pool, whether auth is on)
and uvicorn. Knows nothing of routes."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from hearth.config import Settings
from hearth.errors import AuthError, HearthError, UserInputError
from hearth.serve.keys import has_active_keys
from hearth.serve.options import ServeOptions

if TYPE_CHECKING:
    from hearth.serve.model_pool import LoadedModel
    from hearth.serve.replicas.options import ReplicaOptions


def check_bind(settings: Settings, options: ServeOptions) -> bool:
    """Whether auth is on (some active key exists). Raises AuthError when `options.host`
    is not a loopback address and no key exists."""
    auth = has_active_keys(settings)
    if not options.is_loopback and not auth:
        raise AuthError(
            f"refusing to listen on {options.host}: other machines could use this server "
            "without a key. Create one first with `hearth keys create NAME` (clients then send "
            "`Authorization: Bearer KEY`), or listen on 127.0.0.1"
        )
    return auth


def check_models(
    settings: Settings, models: Sequence[str], tensor_parallel: int = 1, pipeline_parallel: int = 1
) -> None:
    """Each model named at start exists, may be served and splits over `tensor_parallel`
    ranks or `pipeline_parallel` stages (NotFoundError / PolicyError /
    InvalidParameterError: one line and the CLI's exit code, before anything listens)."""
    if not models:
        return
    from hearth.engine import pipeline_parallel as pp
    from hearth.engine import tensor_parallel as tp
    from hearth.licenses import detection_from_stored, enforce
    from hearth.store import Store

    store = Store(settings)
    for name in models:
        record = store.get(name)
        detection = detection_from_stored(record.license_id, record.license_signals)
        enforce(detection, "serve", settings, record.digest)
        if tensor_parallel > 1:
            tp.check_model(store.locate(name).path, tensor_parallel)
        if pipeline_parallel > 1:
            pp.check_model(store.locate(name).path, pipeline_parallel)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port. SO_REUSEADDR lets a restart reuse a port whose old
    connections linger, but never one another server listens on (EADDRINUSE; on Windows the
    flag would allow that, so it is left off there)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def listen(options: ServeOptions, echo: Callable[[str], None]) -> list[socket.socket]:
    """The server's sockets: its port (UserInputError when taken) and, with `ollama_port`,
    that one too when free (a note when another server holds it: never taken over)."""
    try:
        sockets = [bind(options.host, options.port)]
    except OSError as exc:
        raise UserInputError(
            f"cannot listen on {options.host}:{options.port} ({exc.strerror or exc}); "
            "another server may hold the port: choose another with --port"
        ) from exc
    port = options.ollama_port
    if port is not None and port != options.port:
        try:
            sockets.append(bind(options.host, port))
        except OSError as exc:
            why = (
                "another server (Ollama?) holds it"
                if exc.errno == errno.EADDRINUSE
                else (exc.strerror or str(exc))
            )
            echo(
                f"note: not answering on Ollama's port {port}: {why}; clients reach hearth "
                f"on port {options.port} (OLLAMA_HOST=http://{_url_host(options.host)}:"
                f"{options.port})"
            )
    return sockets


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def banner(
    options: ServeOptions, models: Sequence[str], auth: bool, ports: Sequence[int] = ()
) -> list[str]:
    host = _url_host(options.host)
    url = f"http://{host}:{options.port}"
    also = [p for p in ports if p != options.port]
    return [
        f"hearth is serving on {url}  (web UI: {url}/, OpenAI: {url}/v1, Ollama: {url}/api)",
        *(f"also answering Ollama clients on http://{host}:{p} (Ollama's port)" for p in also),
        f"models loaded: {', '.join(models) if models else 'none yet (they load on first use)'}",
        "auth: on (Authorization: Bearer KEY)"
        if auth
        else "auth: off (no API keys; `hearth keys create NAME` turns it on)",
    ]


def describe(model: LoadedModel) -> str:
    """A loaded model for the start-up banner: its context and KV pool."""
    engine = model.llm.engine
    tokens = engine.block_manager.num_blocks * engine.block_manager.block_size
    return (
        f"{model.name} (context {model.max_model_len} tokens; KV pool "
        f"{engine.kv_cache_bytes / 1024**3:.2f} GB, {tokens} tokens)"
    )


def serve(
    settings: Settings,
    options: ServeOptions,
    models: Sequence[str] = (),
    echo: Callable[[str], None] = print,
    replicas: ReplicaOptions | None = None,
) -> None:
    """Check the bind and the models, listen, load `models` (through the license gate),
    print the banner and serve until interrupted. A model that fails to load stops the
    server with its error (one line at the CLI), not a start-up traceback. `replicas`: run
    generation models on Ray Serve replicas (a Ray address that does not answer stops here,
    before anything listens)."""
    import logging

    import uvicorn

    from hearth.serve.app import create_app

    auth = check_bind(settings, options)
    check_models(settings, models, options.tensor_parallel, options.pipeline_parallel)
    if replicas is not None and replicas.ray_address is not None:
        from hearth.ray_address import check_reachable
        from hearth.serve.replicas.cluster import LOCAL_HINT

        check_reachable(replicas.ray_address, replicas.connect_timeout_s, LOCAL_HINT)
    sockets = listen(options, echo)
    ports = [s.getsockname()[1] for s in sockets]
    # loaded after start-up (below), not in the app's lifespan: uvicorn would print a
    # failure there as a traceback
    app = create_app(settings, options, replicas=replicas)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    original = server.startup
    failure: list[HearthError] = []

    async def startup(sockets=None):  # type: ignore[no-untyped-def]
        await original(sockets)
        if not server.started:
            return
        try:
            for name in models:
                await app.state.hearth.pool.get(name, pin=True)
        except HearthError as exc:
            failure.append(exc)
            server.should_exit = True  # uvicorn still shuts down: loaded engines stop
            return
        loaded = [describe(m) for m in app.state.hearth.pool.loaded()]
        for line in banner(options, loaded or models, auth, ports):
            echo(line)
        if replicas is not None:
            echo(replicas.describe())

    server.startup = startup  # type: ignore[method-assign]
    try:
        server.run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
    if failure:
        raise failure[0]
