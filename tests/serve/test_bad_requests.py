"""Bad requests are the client's fault and get 4xx, never 500: text that is not valid
Unicode (lone surrogates) anywhere in a body, schemas nested deeper than the server
follows, keep_alive values that are no duration, and bodies over the limit however they are
sent (chunked too: 413). `/api/ps` keeps answering."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

MODEL = "smollm2:135m"


def _post(url: str, body: dict[str, Any]) -> httpx.Response:
    # json.dumps escapes the surrogate as "\ud800" (httpx's own encoder would refuse it)
    return httpx.post(url, content=json.dumps(body), timeout=120,
                      headers={"Content-Type": "application/json"})


def nested_schema(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def test_lone_surrogates_are_400(served) -> None:  # type: ignore[no-untyped-def]
    base = served.main.url
    bad = "\ud800"
    cases = [
        ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": bad}]}),
        ("/v1/completions", {"model": MODEL, "prompt": bad}),
        ("/api/generate", {"model": MODEL, "prompt": "hi" + bad, "stream": False}),
        ("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": bad}]}),
        ("/api/embed", {"model": MODEL, "input": ["fine", bad]}),
        ("/v1/embeddings", {"model": MODEL, "input": bad}),
        ("/v1/chat/completions", {
            "model": MODEL, "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {
                "name": "x", "schema": {"type": "string", "pattern": bad}}},
        }),
    ]
    for path, body in cases:
        r = _post(base + path, body)
        assert r.status_code == 400, (path, r.status_code, r.text)
        assert "not valid Unicode" in r.text
    ok = {"model": MODEL, "messages": [{"role": "user", "content": "\U0001f600"}], "max_tokens": 1}
    assert _post(base + "/v1/chat/completions", ok).status_code == 200


def test_deeply_nested_schema_is_400(served) -> None:  # type: ignore[no-untyped-def]
    base = served.main.url
    schema = nested_schema(98)
    r = _post(base + "/v1/chat/completions", {
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    })
    assert r.status_code == 400 and "levels deep" in r.json()["error"]["message"]
    r = _post(base + "/api/generate", {"model": MODEL, "prompt": "hi", "format": schema})
    assert r.status_code == 400


def test_keep_alive_must_be_a_duration(served) -> None:  # type: ignore[no-untyped-def]
    base = served.main.url
    for value in ("nan", "inf", "-inf", 1e300, "1e300", "9999999999h"):
        body = {"model": MODEL, "prompt": "hi", "stream": False, "keep_alive": value}
        r = _post(base + "/api/generate", body)
        assert r.status_code == 400 and "keep_alive" in r.json()["error"], (value, r.text)
    # NaN as a bare JSON literal (Python's parser takes it)
    raw = '{"model": "smollm2:135m", "prompt": "hi", "keep_alive": NaN}'
    r = httpx.post(base + "/api/generate", content=raw, timeout=60)
    assert r.status_code == 400
    r = httpx.get(base + "/api/ps", timeout=30)
    assert r.status_code == 200 and r.json()["models"]


def test_chunked_body_over_the_limit_is_413(served) -> None:  # type: ignore[no-untyped-def]
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "smollm2:135m", "prompt": "'
        for _ in range(50):
            yield b"a" * (1 << 20)
        yield b'"}'

    try:
        r = httpx.post(served.main.url + "/api/generate", content=chunks(), timeout=60)
    except httpx.HTTPError as exc:  # the server may close while the client still sends
        pytest.fail(f"no 413 answer: {exc!r}")
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert httpx.get(served.main.url + "/health").status_code == 200
