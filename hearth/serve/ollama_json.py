"""The Ollama routes (/api/*) read the body as JSON whatever its Content-Type says, as
Ollama does: its documented `curl http://localhost:11434/api/chat -d '{...}'` sends
`application/x-www-form-urlencoded`. A body that is not JSON still gets the 400 that says
so. Safe only with the Origin/Host checks of `origins.py` in front (a text/plain POST is a
"simple" cross-site request that any web page may send without a preflight). Knows nothing
of the routes themselves."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

_JSON = b"application/json"


class OllamaJsonBodyMiddleware:
    """Rewrite a POST/DELETE's Content-Type on /api/* to application/json, so FastAPI parses
    the body as JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in ("POST", "DELETE", "PUT")
            and scope.get("path", "").startswith("/api/")
        ):
            headers = [(k, v) for k, v in scope.get("headers", []) if k != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", _JSON)]}
        await self.app(scope, receive, send)
