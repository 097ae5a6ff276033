"""Running the app: the bind-safety check (any address but loopback needs an API key in the
database, or the server refuses to start and says how to make one), the startup banner (URL,
models with their context and KV pool, whether auth is on) and uvicorn. Knows nothing of routes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from hearth.config import Settings
from hearth.errors import AuthError
from hearth.serve.keys import has_active_keys
from hearth.serve.options import ServeOptions

if TYPE_CHECKING:
    from hearth.serve.model_pool import LoadedModel


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


def banner(options: ServeOptions, models: Sequence[str], auth: bool) -> list[str]:
    host = f"[{options.host}]" if ":" in options.host else options.host
    url = f"http://{host}:{options.port}"
    return [
        f"hearth is serving on {url}  (OpenAI: {url}/v1, Ollama: {url}/api)",
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
) -> None:
    """Check the bind, load `models` (through the license gate), print the banner and serve
    until interrupted."""
    import logging

    import uvicorn

    from hearth.serve.app import create_app

    auth = check_bind(settings, options)
    app = create_app(settings, options, preload=models)
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

    async def startup(sockets=None):  # type: ignore[no-untyped-def]
        await original(sockets)
        if server.started:
            loaded = [describe(m) for m in app.state.hearth.pool.loaded()]
            for line in banner(options, loaded or models, auth):
                echo(line)

    server.startup = startup  # type: ignore[method-assign]
    server.run()
