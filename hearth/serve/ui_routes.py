"""The web UI's files: `GET /` answers a browser (Accept: text/html) with the page and
everything else with "hearth is running" (what clients probing the server read); `GET
/ui/NAME` serves the page's scripts and styles from hearth/ui/static, gzipped when the
browser accepts it. Every answer carries a strict Content-Security-Policy: scripts and
styles only from this server, no inline script, nothing fetched from elsewhere, so text a
model writes can never load or run anything even if it reached the page as markup. The
files hold no data; the data comes from the API, behind the key when auth is on."""

from __future__ import annotations

import gzip
import mimetypes
from dataclasses import dataclass

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import PlainTextResponse, Response

from hearth.ui import STATIC_DIR

router = APIRouter(include_in_schema=False)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # the page and its modules change together with hearth: revalidate rather than mix versions
    "Cache-Control": "no-cache",
}
_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    media_type: str


def _load_assets() -> dict[str, Asset]:
    """Every file in static/, read once (a fixed set of names: no path from a request ever
    reaches the file system)."""
    assets = {}
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file():
            body = path.read_bytes()
            kind = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "text/plain"
            assets[path.name] = Asset(body, gzip.compress(body, 9, mtime=0), kind)
    return assets


_ASSETS: dict[str, Asset] = {}


def assets() -> dict[str, Asset]:
    if not _ASSETS:  # read on first use, not at import
        _ASSETS.update(_load_assets())
    return _ASSETS


def _serve(request: Request, asset: Asset) -> Response:
    headers = dict(HEADERS, Vary="Accept-Encoding")
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get("/")
@router.head("/")
async def root(request: Request) -> Response:
    if "text/html" in request.headers.get("accept", ""):
        return _serve(request, assets()["index.html"])
    return PlainTextResponse("hearth is running")


@router.get("/ui/{name}")
async def asset(name: str, request: Request) -> Response:
    found = assets().get(name)
    if found is None:
        raise HTTPException(404, f"no UI file {name!r}")
    return _serve(request, found)
