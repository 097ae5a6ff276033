"""Browsers are kept out, as Ollama keeps them out (OLLAMA_ORIGINS) and more: a request from
a web page at a foreign Origin gets 403, and on a loopback bind a foreign Host header (DNS
rebinding) gets 403; only then do the Ollama routes accept JSON whatever the Content-Type
says (Ollama's own `curl -d` examples), and the official `ollama` client finds hearth by
`host=` or OLLAMA_HOST."""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import ollama
import pytest

from hearth.config import load_settings
from hearth.serve.app import create_app
from hearth.serve.options import ServeOptions
from hearth.serve.origins import OriginGuard

GENERATE = {"model": "smollm2:135m", "prompt": "Hi", "stream": False, "options": {"num_predict": 1}}


def test_guard_rules() -> None:
    guard = OriginGuard(["https://app.example", "https://*.corp.example"], ["hearth.lan"], True)
    for origin in ("http://localhost", "http://localhost:3000", "https://127.0.0.1:8443",
                   "http://[::1]:5173", "https://app.example", "https://wiki.corp.example",
                   "app://obsidian.md", "vscode-webview://abc"):
        assert guard.origin_allowed(origin, "127.0.0.1:11435"), origin
    for origin in ("https://evil.example", "null", "http://localhost.evil.example",
                   "ftp://localhost", "https://app.example.evil", "http://127.0.0.2"):
        assert not guard.origin_allowed(origin, "127.0.0.1:11435"), origin
    for host in ("localhost", "LOCALHOST:11435", "127.0.0.1:1", "[::1]:80", "::1", "hearth.lan:8"):
        assert guard.host_allowed(host), host
    for host in ("attacker.example", "attacker.example:11435", "127.0.0.1.evil.example", ""):
        assert not guard.host_allowed(host), host
    assert OriginGuard([], [], check_host=False).host_allowed("attacker.example")
    assert OriginGuard(["*"], [], True).origin_allowed("https://any.example", None)


def test_foreign_origin_is_refused(served) -> None:  # type: ignore[no-untyped-def]
    url = served.main.url
    evil = {"Origin": "https://evil.example"}
    r = httpx.get(url + "/api/tags", headers=evil)
    assert r.status_code == 403 and "HEARTH_ORIGINS" in r.json()["error"]
    r = httpx.get(url + "/v1/models", headers=evil)
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    # the "simple" cross-site POST a page can send without a preflight
    r = httpx.post(url + "/api/generate", content=json.dumps(GENERATE),
                   headers={**evil, "Content-Type": "text/plain"})
    assert r.status_code == 403
    preflight = {**evil, "Access-Control-Request-Method": "POST"}
    assert httpx.options(url + "/v1/chat/completions", headers=preflight).status_code == 403
    for origin in ("http://localhost:3000", "http://127.0.0.1:8080", "http://[::1]:5173", url):
        assert httpx.get(url + "/api/tags", headers={"Origin": origin}).status_code == 200


def test_foreign_host_is_refused(served) -> None:  # type: ignore[no-untyped-def]
    url = served.main.url
    for host in ("attacker.example", "attacker.example:80", "localhost.attacker.example"):
        r = httpx.get(url + "/api/tags", headers={"Host": host})
        assert r.status_code == 403 and "DNS rebinding" in r.json()["error"], host
    port = url.rsplit(":", 1)[1]
    for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert httpx.get(url + "/api/tags", headers={"Host": host}).status_code == 200, host


def test_configured_origins_and_hosts(tmp_path, start_app) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings({
        "HEARTH_HOME": str(tmp_path),
        "HEARTH_ORIGINS": "https://app.example, https://*.corp.example",
        "HEARTH_ALLOWED_HOSTS": "hearth.lan",
    })
    url = start_app(create_app(settings, ServeOptions.from_settings(settings, port=0))).url
    r = httpx.get(url + "/api/tags", headers={"Origin": "https://app.example"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    r = httpx.get(url + "/api/tags", headers={"Origin": "https://wiki.corp.example"})
    assert r.headers["access-control-allow-origin"] == "https://wiki.corp.example"
    assert httpx.get(url + "/api/tags", headers={"Origin": "https://b.example"}).status_code == 403
    assert httpx.get(url + "/api/tags", headers={"Host": "hearth.lan:11435"}).status_code == 200
    # a server listening beyond loopback is reached by any name (auth guards it instead)
    public = create_app(settings, ServeOptions(host="0.0.0.0", port=0))
    public_url = start_app(public).url
    r = httpx.get(public_url + "/health", headers={"Host": "hearth.example.org"})
    assert r.status_code == 200


def test_ollama_routes_take_json_whatever_the_content_type(served) -> None:  # type: ignore[no-untyped-def]
    url = served.main.url
    body = json.dumps(GENERATE)
    for headers in ({}, {"Content-Type": "application/x-www-form-urlencoded"},
                    {"Content-Type": "text/plain"}):
        r = httpx.post(url + "/api/generate", content=body, headers=headers, timeout=120)
        assert r.status_code == 200, (headers, r.text)
        assert r.json()["done"] is True
    r = httpx.post(url + "/api/show", content="model=smollm2", timeout=30,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    # the OpenAI routes keep their own rule (JSON, as OpenAI's API)
    r = httpx.post(url + "/v1/chat/completions", content=body, timeout=30,
                   headers={"Content-Type": "text/plain"})
    assert r.status_code == 400


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl on this machine")
def test_ollama_docs_curl_example(served) -> None:  # type: ignore[no-untyped-def]
    # as Ollama's README writes it: `curl http://localhost:11434/api/generate -d '{...}'`
    url = served.main.url.replace("127.0.0.1", "localhost")
    done = subprocess.run(["curl", "-sS", "--max-time", "120", url + "/api/generate", "-d",
                           json.dumps(GENERATE)], capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model"] == "smollm2:135m"


def test_official_ollama_client_finds_hearth(served, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    url = served.main.url
    with ollama.Client(host=url) as client:
        assert "smollm2:135m" in [m.model for m in client.list().models]
        reply = client.generate(model="smollm2:135m", prompt="Hi", options={"num_predict": 1})
        assert reply.done
    monkeypatch.setenv("OLLAMA_HOST", url.removeprefix("http://"))  # as users export it
    with ollama.Client() as client:
        assert "smollm2:135m" in [m.model for m in client.list().models]
