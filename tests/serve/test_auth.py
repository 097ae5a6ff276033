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
