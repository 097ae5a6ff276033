"""`create_app(settings, options)`: the FastAPI application — OpenAI routes under /v1,
Ollama routes under /api, the arena API, the web UI (`GET /` for a browser, "hearth is
running" for other clients; ui_routes.py) with its usage, conversation, library and eval
APIs, `/health`, `/metrics`, the API docs (behind the key when auth is on) — with the error
mapping, the Origin/Host checks, the body limit, JSON bodies on /api whatever their
Content-Type, CORS (closed unless origins are configured), one access-log line per
request, the usage ledger, request metrics, and the model pool's lifecycle. Knows nothing
of how it is served (server.py runs uvicorn) and never touches tensors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth import __version__
from hearth.config import Settings
from hearth.serve import (
    arena_routes,
    conversation_routes,
    errors,
    eval_routes,
    library_routes,
    ollama_routes,
    openai_routes,
    rerank_routes,
    ui_routes,
    usage_routes,
)
from hearth.serve.auth import require_key
from hearth.serve.keys import has_active_keys
from hearth.serve.limits import Admission, BodyLimitMiddleware, RateLimiter
from hearth.serve.metrics import CONTENT_TYPE, ServerMetrics
from hearth.serve.model_pool import ModelPool
from hearth.serve.ollama_json import OllamaJsonBodyMiddleware
from hearth.serve.options import ServeOptions
from hearth.serve.origins import OriginGuard, OriginGuardMiddleware
from hearth.serve.state import ServerState, get_state, new_request_id
from hearth.serve.usage_meter import UsageLedgerMiddleware

if TYPE_CHECKING:
    from hearth.serve.replicas.options import ReplicaOptions
    from hearth.store import Store

access_log = logging.getLogger("hearth.serve.access")


class AccessLogMiddleware:
    """Request id (X-Request-Id), request metrics, and one log line per request:
    method, path, status, model, prompt/output tokens, TTFT, duration."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, enabled: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state: dict[str, Any] = scope.setdefault("state", {})
        state.setdefault("request_id", new_request_id())
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", str(state["request_id"]).encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            took = time.perf_counter() - start
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(label, scope["method"], str(status)).inc()
            self.metrics.duration.labels(label).observe(took)
            if self.enabled:
                ttft = state.get("ttft_s")
                access_log.info(
                    "%s %s %s %d model=%s prompt_tokens=%s output_tokens=%s ttft=%s "
                    "duration=%.3fs key=%s",
                    state.get("request_id"),
                    scope["method"],
                    scope["path"],
                    status,
                    state.get("model", "-"),
                    state.get("prompt_tokens", "-"),
                    state.get("output_tokens", "-"),
                    f"{ttft:.3f}s" if isinstance(ttft, float) else "-",
                    took,
                    state.get("key_name") or "-",
                )


def create_app(
    settings: Settings,
    options: ServeOptions | None = None,
    *,
    store: Store | None = None,
    preload: Sequence[str] = (),
    pool: ModelPool | None = None,
    replicas: ReplicaOptions | None = None,
) -> FastAPI:
    """The server application. `preload`: model names loaded (and pinned) at startup.
    `pool`: share another app's loaded models (several listeners on one event loop); that
    app starts and closes it. `replicas`: run generation models as Ray Serve replicas
    (hearth.serve.replicas)."""
    from hearth.store import Store

    options = options or ServeOptions.from_settings(settings)
    owns_pool = pool is None
    if pool is None and replicas is not None:
        from hearth.serve.replicas.pool import ReplicaPool

        pool = ReplicaPool(
            settings, options, store or Store(settings, options.staging_dir), replicas
        )
    own_pool = pool or ModelPool(settings, options, store or Store(settings, options.staging_dir))
    metrics = ServerMetrics(own_pool.snapshots)
    state = ServerState(
        settings=settings,
        options=options,
        pool=own_pool,
        admission=Admission(options.max_running, options.max_queue),
        rate_limiter=RateLimiter(options.rate_limit_per_minute),
        metrics=metrics,
        auth_required=not options.is_loopback or has_active_keys(settings),
        auth_failures=RateLimiter(options.max_auth_failures_per_minute),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not owns_pool:  # the pool's owner runs its lifecycle
            yield
            return
        own_pool.start()
        try:
            for name in preload:
                await own_pool.get(name, pin=True)
            yield
        finally:
            await own_pool.close()

    app = FastAPI(
        title="hearth",
        version=__version__,
        description="OpenAI-compatible (/v1) and Ollama-compatible (/api) API for local models.",
        lifespan=lifespan,
        docs_url=None,  # added below behind the key
        redoc_url=None,
        openapi_url=None,
    )
    app.state.hearth = state
    errors.install(app)
    web = (ui_routes, usage_routes, conversation_routes, library_routes, eval_routes)
    routers = (*openai_routes.routers, *ollama_routes.routers, arena_routes.router)
    for router in (*routers, rerank_routes.router, *(m.router for m in web)):
        app.include_router(router)

    @app.get("/health", tags=["health"])
    async def health(st: ServerState = Depends(get_state)) -> JSONResponse:
        return JSONResponse({"status": "ok", "models_loaded": [m.name for m in st.pool.loaded()]})

    @app.get("/metrics", dependencies=[Depends(require_key)], tags=["health"])
    async def prometheus(st: ServerState = Depends(get_state)) -> Response:
        body = await asyncio.to_thread(st.metrics.render)
        return Response(body, media_type=CONTENT_TYPE)

    _add_docs(app)
    # added innermost first: access log, Origin/Host guard, CORS, body limit, JSON bodies,
    # usage ledger
    app.add_middleware(UsageLedgerMiddleware, settings=settings)
    app.add_middleware(OllamaJsonBodyMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=options.max_body_bytes)
    if options.allowed_origins:
        _add_cors(app, options.allowed_origins)
    guard = OriginGuard(options.allowed_origins, options.allowed_hosts, options.is_loopback)
    app.add_middleware(OriginGuardMiddleware, guard=guard)
    app.add_middleware(AccessLogMiddleware, metrics=metrics, enabled=options.access_log)
    if replicas is not None:
        from hearth.serve.replicas.pool import ReplicaPool, attach

        assert isinstance(own_pool, ReplicaPool)
        attach(app, own_pool, metrics)
    return app


def _add_docs(app: FastAPI) -> None:
    """/openapi.json, /docs, /redoc: FastAPI's, but behind the key when auth is on."""
    keyed = [Depends(require_key)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=keyed)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=keyed)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="hearth - API")

    @app.get("/redoc", include_in_schema=False, dependencies=keyed)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="hearth - API")


def _add_cors(app: FastAPI, origins: Sequence[str]) -> None:
    """CORS headers for the allowed origins ("*" or `*` patterns such as https://*.example)."""
    import fnmatch

    from starlette.middleware.cors import CORSMiddleware

    exact = [o for o in origins if o == "*" or "*" not in o]
    patterns = [fnmatch.translate(o) for o in origins if o != "*" and "*" in o]
    app.add_middleware(
        CORSMiddleware,
        allow_origins=exact,
        allow_origin_regex="|".join(patterns) or None,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
    )
