"""Safe by default: keys stored hashed and shown once; with keys in the database every API
route needs `Authorization: Bearer KEY` (401 otherwise, and after revocation); a
non-loopback bind without a key refuses to start; the per-key rate limit answers 429."""

from __future__ import annotations

import hashlib

import httpx
import ollama
import openai
import pytest
from sqlalchemy import select

from hearth.config import load_settings
from hearth.db import session_factory
from hearth.errors import AuthError
from hearth.serve.errors import RateLimited
from hearth.serve.keys import ApiKeyRow, create_key, list_keys, revoke_key
from hearth.serve.limits import RateLimiter
from hearth.serve.options import ServeOptions
from hearth.serve.server import check_bind


def test_keys_are_hashed_and_shown_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings({"HEARTH_HOME": str(tmp_path)})
    key, secret = create_key(settings, "laptop")
    with session_factory(settings.db_url)() as s:
        row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.name == "laptop"))
    assert row is not None and row.hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in (row.hash, row.prefix) and secret.startswith(row.prefix)
    with pytest.raises(Exception, match="revoke it first"):
        create_key(settings, "laptop")
    with pytest.raises(Exception, match="invalid key name"):
        create_key(settings, "../x")
    assert [k.name for k in list_keys(settings)] == ["laptop"] and key.active


def test_bind_needs_a_key_off_loopback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings({"HEARTH_HOME": str(tmp_path)})
    assert check_bind(settings, ServeOptions(host="127.0.0.1")) is False
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"):
        with pytest.raises(AuthError, match="hearth keys create NAME"):
            check_bind(settings, ServeOptions(host=host))
    create_key(settings, "ops")
    assert check_bind(settings, ServeOptions(host="0.0.0.0")) is True


def test_keyed_server_wants_a_valid_key(served) -> None:  # type: ignore[no-untyped-def]
    url = served.keyed.url
    _, secret = create_key(served.keyed_settings, "alice")
    ok = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(url + "/v1/models", headers=ok).status_code == 200
    r = httpx.get(url + "/v1/models")
    assert r.status_code == 401 and "hearth keys create" in r.json()["error"]["message"]
    assert r.headers["www-authenticate"] == "Bearer"
    r = httpx.get(url + "/api/tags", headers={"Authorization": "Bearer hth_wrong"})
    assert r.status_code == 401 and r.json()["error"].startswith("invalid or revoked")
    assert httpx.get(url + "/metrics").status_code == 401
    assert httpx.get(url + "/").status_code == 200  # liveness stays open
    with openai.OpenAI(base_url=url + "/v1", api_key=secret, max_retries=0) as client:
        assert client.models.list().data == []
        revoke_key(served.keyed_settings, "alice")
        with pytest.raises(openai.AuthenticationError, match="revoked"):
            client.models.list()
    with ollama.Client(host=url, headers=ok) as oc, pytest.raises(ollama.ResponseError) as err:
        oc.list()
    assert err.value.status_code == 401


def test_rate_limit() -> None:
    limiter = RateLimiter(per_minute=2)
    limiter.check("k", now=0.0)
    limiter.check("k", now=1.0)
    limiter.check("other", now=1.0)
    with pytest.raises(RateLimited) as err:
        limiter.check("k", now=2.0)
    assert err.value.retry_after == pytest.approx(58.0)
    limiter.check("k", now=60.5)  # the first hit left the window


def test_cors_closed_by_default(served) -> None:  # type: ignore[no-untyped-def]
    r = httpx.options(
        served.main.url + "/v1/models",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in r.headers


def test_revoking_the_last_key_keeps_auth_on(tmp_path, start_app) -> None:  # type: ignore[no-untyped-def]
    from hearth.serve.app import create_app

    settings = load_settings({"HEARTH_HOME": str(tmp_path)})
    _, secret = create_key(settings, "k1")
    url = start_app(create_app(settings, ServeOptions(port=0))).url
    ok = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(url + "/api/tags", headers=ok).status_code == 200
    revoke_key(settings, "k1")  # the last active key
    for path in ("/api/tags", "/v1/models", "/api/ps", "/metrics", "/openapi.json"):
        for headers in ({}, ok):  # no key, and the revoked one
            r = httpx.get(url + path, headers=headers)
            assert r.status_code == 401, (path, r.text)
    r = httpx.get(url + "/v1/models")
    assert "hearth keys create NAME" in r.json()["error"]["message"]
    assert httpx.get(url + "/health").status_code == 200
    _, fresh = create_key(settings, "k2")  # a new key works again, the old one never
    assert httpx.get(url + "/api/tags", headers={"Authorization": f"Bearer {fresh}"}).is_success
    assert httpx.get(url + "/api/tags", headers=ok).status_code == 401


def test_auth_stays_on_once_a_key_appeared(tmp_path, start_app) -> None:  # type: ignore[no-untyped-def]
    from hearth.serve.app import create_app

    settings = load_settings({"HEARTH_HOME": str(tmp_path)})
    url = start_app(create_app(settings, ServeOptions(port=0))).url
    assert httpx.get(url + "/api/tags").status_code == 200  # loopback, no keys: open
    create_key(settings, "late")
    assert httpx.get(url + "/api/tags").status_code == 401
    revoke_key(settings, "late")
    assert httpx.get(url + "/api/tags").status_code == 401


def test_non_loopback_server_without_keys_refuses_all(tmp_path, start_app) -> None:  # type: ignore[no-untyped-def]
    from hearth.serve.app import create_app

    settings = load_settings({"HEARTH_HOME": str(tmp_path)})
    # told it listens on every address (the test server itself stays on 127.0.0.1)
    url = start_app(create_app(settings, ServeOptions(host="0.0.0.0", port=0))).url
    r = httpx.get(url + "/api/tags")
    assert r.status_code == 401 and "hearth keys create NAME" in r.json()["error"]
    assert httpx.get(url + "/health").status_code == 200


def test_docs_need_a_key_when_auth_is_on(served) -> None:  # type: ignore[no-untyped-def]
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(served.keyed.url + path).status_code == 401, path
        assert httpx.get(served.main.url + path).status_code == 200, path  # auth off
    assert "/v1/chat/completions" in httpx.get(served.main.url + "/openapi.json").json()["paths"]


def test_failed_auth_counts_against_the_client(tmp_path, start_app) -> None:  # type: ignore[no-untyped-def]
    from hearth.serve.app import create_app

    settings = load_settings({"HEARTH_HOME": str(tmp_path)})
    _, secret = create_key(settings, "k1")
    app = create_app(settings, ServeOptions(port=0, max_auth_failures_per_minute=5))
    url = start_app(app).url
    bad = {"Authorization": "Bearer hth_guess"}
    statuses = [httpx.get(url + "/api/tags", headers=bad).status_code for _ in range(8)]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429] * 3
    r = httpx.get(url + "/api/tags", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 429 and "retry-after" in r.headers  # even a right key: wait
    # with a rate limit, failed requests count toward it too
    limited = create_app(settings, ServeOptions(port=0, rate_limit_per_minute=3))
    url = start_app(limited).url
    statuses = [httpx.get(url + "/api/tags", headers=bad).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
