"""The web UI's files: `/` is the page for a browser and "hearth is running" for other
clients; every file carries the strict Content-Security-Policy and nosniff, is gzipped
when asked, and only the files in hearth/ui/static are served; the page references only
its own server's files, and no script has inline handlers or HTML parsing."""

from __future__ import annotations

import gzip
import re

import httpx

from hearth.serve.ui_routes import CSP
from hearth.ui import STATIC_DIR


def test_root_and_assets(served) -> None:  # type: ignore[no-untyped-def]
    url = served.main.url
    assert httpx.get(url + "/").text == "hearth is running"
    page = httpx.get(url + "/", headers={"Accept": "text/html,*/*"})
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    for ref in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert ref.startswith(("/ui/", "#/", "data:")), ref
    script = httpx.get(url + "/ui/app.js", headers={"Accept-Encoding": "gzip"})
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["content-encoding"] == "gzip"
    assert script.text == (STATIC_DIR / "app.js").read_text()  # httpx decoded it
    raw = httpx.get(url + "/ui/app.css", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers and raw.content.startswith(b"/*")
    for bad in ("/ui/nope.js", "/ui/..%2F__init__.py", "/ui/%2e%2e/__init__.py"):
        assert httpx.get(url + bad).status_code == 404, bad


def test_no_inline_code_or_html_parsing() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    assert "<script>" not in html and "<style" not in html
    assert not re.search(r"<[^>]*\son\w+=", html)  # no inline event handlers
    for path in STATIC_DIR.glob("*.js"):
        text = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, f"{path.name} uses {sink}"


def test_assets_budget() -> None:
    """The whole UI gzipped stays far under the issue's 500 KB budget for the chat page."""
    total = sum(len(gzip.compress(p.read_bytes(), 9)) for p in STATIC_DIR.iterdir())
    assert total < 500_000
