"""Models unload after their keep_alive, as Ollama's do: a request's `keep_alive` sets how
long the model stays loaded once idle; 0 unloads it as soon as the request ends."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from hearth.store import Store

NAME = "keepalive-probe:latest"


def _loaded(base: str) -> list[str]:
    return [m["name"] for m in httpx.get(base + "/api/ps", timeout=30).json()["models"]]


@pytest.fixture
def second_model(served) -> Iterator[str]:  # type: ignore[no-untyped-def]
    store = Store(served.settings)
    store.copy("smollm2:135m", NAME)
    yield NAME
    store.remove([NAME])


def test_model_unloads_after_keep_alive(served, second_model: str) -> None:  # type: ignore[no-untyped-def]
    base = served.main.url
    body = {"model": second_model, "prompt": "Hi", "options": {"num_predict": 1}, "stream": False}
    r = httpx.post(base + "/api/generate", json={**body, "keep_alive": "2s"}, timeout=300)
    assert r.status_code == 200, r.text
    assert second_model in _loaded(base)
    deadline = time.monotonic() + 30
    while second_model in _loaded(base) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert second_model not in _loaded(base), "not unloaded 2 s after its last use"
    assert "smollm2:135m" in _loaded(base)  # the pinned model stays
    # keep_alive 0: unloaded as soon as the request is answered
    r = httpx.post(base + "/api/generate", json={**body, "keep_alive": 0}, timeout=300)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    while second_model in _loaded(base) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert second_model not in _loaded(base)
