"""Browser protections, as Ollama's (`OLLAMA_ORIGINS`) and more: a request whose `Origin`
header names a page outside the allow-list gets 403 (loopback pages on any port, local
apps' schemes, the configured origins, and the server's own origin are allowed), and on a loopback bind a
request whose `Host` header is not a loopback name (or a configured one) gets 403, so a page
that rebinds its DNS name to 127.0.0.1 cannot reach the server. Without these, any web page
could drive a loopback server with "simple" cross-site POSTs (the Ollama routes accept JSON
whatever the Content-Type says). Clients that are not browsers send no Origin and are not
affected. Knows nothing of routes or models."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from hearth.serve.errors import Problem, response_for

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# local desktop apps (Electron, Tauri, VS Code webviews) send these; Ollama allows them too,
# and no web page can claim them
APP_SCHEMES = ("app", "file", "tauri", "vscode-webview", "vscode-file")


def _split_host(value: str) -> tuple[str, str]:
    """("name", "port") of a Host header value or URL authority ("[::1]:8080" -> ("::1", "8080"))."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        return name, rest.removeprefix(":")
    if value.count(":") > 1:  # a bare IPv6 address
        return value, ""
    name, _, port = value.partition(":")
    return name, port


def is_local_origin(origin: str) -> bool:
    """http(s)://localhost|127.0.0.1|0.0.0.0|[::1] on any port, or a local app's scheme."""
    parts = urlsplit(origin.strip().lower())
    if parts.scheme in APP_SCHEMES:
        return True
    if parts.scheme not in ("http", "https"):
        return False
    return _split_host(parts.netloc)[0] in (*LOOPBACK_NAMES, "0.0.0.0")


class OriginGuard:
    """The allow-lists. `origins`: allowed besides loopback ones; exact ("https://app.example"),
    with `*` wildcards ("https://*.example.org") or "*" (any page). `hosts`: Host names
    accepted besides loopback ones when `check_host` (a loopback bind)."""

    def __init__(self, origins: Iterable[str], hosts: Iterable[str], check_host: bool) -> None:
        self.origins = tuple(o.strip().lower().rstrip("/") for o in origins if o.strip())
        self.hosts = {_split_host(h)[0] for h in hosts if h.strip()} | set(LOOPBACK_NAMES)
        self.check_host = check_host

    def host_allowed(self, host: str | None) -> bool:
        if not self.check_host:
            return True
        if host is None:  # HTTP/1.0 without Host: not a browser, nothing to rebind
            return True
        return _split_host(host)[0] in self.hosts

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        origin = origin.strip().lower().rstrip("/")
        if is_local_origin(origin):
            return True
        if host is not None and urlsplit(origin).netloc == host.strip().lower():
            return True  # the server's own pages (same origin) are not cross-site
        return any(fnmatch.fnmatchcase(origin, pattern) for pattern in self.origins)


class OriginGuardMiddleware:
    """403 for a foreign Origin, or (loopback bind) a foreign Host, before anything else runs."""

    def __init__(self, app: ASGIApp, guard: OriginGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k: v for k, v in scope.get("headers", []) if k in (b"host", b"origin")}
        host = headers[b"host"].decode("latin-1") if b"host" in headers else None
        message = None
        if not self.guard.host_allowed(host):
            message = (
                f"refused: Host {host!r} is not a name of this server (a web page may be "
                "using DNS rebinding to reach it); use http://127.0.0.1 or http://localhost, "
                "or add the name to HEARTH_ALLOWED_HOSTS"
            )
        elif b"origin" in headers:
            origin = headers[b"origin"].decode("latin-1")
            if not self.guard.origin_allowed(origin, host):
                message = (
                    f"refused: requests from web pages at {origin!r} are not allowed; the "
                    "operator allows an origin with HEARTH_ORIGINS (comma-separated) or "
                    "`hearth serve --cors-origin ORIGIN`"
                )
        if message is None:
            await self.app(scope, receive, send)
            return
        problem = Problem(403, message, "permission_error", "origin_not_allowed")
        await response_for(problem, scope.get("path", ""))(scope, receive, send)
