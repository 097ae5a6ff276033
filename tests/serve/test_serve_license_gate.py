"""The license gate when serving: a model whose license the policy forbids is answered
with 403 quoting the clause, on both APIs, and the server keeps serving the others; a
policy change applies at once to models already loaded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hearth.licenses.policy import set_policy_value
from hearth.store import Store


@pytest.fixture
def commercial_policy(served, nc_gguf: Path) -> Iterator[None]:  # type: ignore[no-untyped-def]
    # the served store is shared by the session: the policy is put back afterwards
    Store(served.settings).import_path(nc_gguf, "nc-model")
    set_policy_value(served.settings, "commercial", "true")
    yield
    (served.settings.home / "policy.toml").unlink()
    Store(served.settings).remove(["nc-model"])


def test_forbidden_license_is_403_with_the_clause(served, commercial_policy: None) -> None:  # type: ignore[no-untyped-def]
    base = served.main.url
    chat = {"model": "nc-model", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(base + "/v1/chat/completions", json=chat, timeout=60)
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["type"] == "permission_error" and "NonCommercial" in error["message"]
    r = httpx.post(base + "/api/generate", json={"model": "nc-model", "prompt": "hi"}, timeout=60)
    assert r.status_code == 403 and "NonCommercial" in r.json()["error"]
    # the server keeps serving a model the policy allows (SmolLM2 is apache-2.0)
    ok = {**chat, "model": "smollm2:135m", "max_tokens": 2}
    assert httpx.post(base + "/v1/chat/completions", json=ok, timeout=120).status_code == 200


def nc_copy_of(gguf_path: Path, dest: Path) -> Path:
    """A loadable non-commercial model: the SmolLM2 file with its license field rewritten
    in place ("apache-2.0" -> "cc-by-nc-4", the same length; read as CC-BY-NC-4.0)."""
    data = bytearray(gguf_path.read_bytes())
    at = data.find(b"apache-2.0", 0, 1 << 20)  # in the header, before the tensors
    assert at > 0
    data[at : at + 10] = b"cc-by-nc-4"
    dest.write_bytes(data)
    return dest


def test_policy_change_stops_a_loaded_model(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = served.main.url
    store = Store(served.settings)
    record = store.import_path(nc_copy_of(served.model_path, tmp_path / "nc.gguf"), "nc-live")
    assert record.license_id == "cc-by-nc-4.0"
    chat = {"model": "nc-live", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    gen = {"model": "nc-live", "prompt": "hi", "stream": False, "options": {"num_predict": 1}}
    try:
        # non-commercial use (the default policy): it loads and answers
        assert httpx.post(base + "/v1/chat/completions", json=chat, timeout=120).status_code == 200
        assert "nc-live:latest" in [m.name for m in served.main.state.pool.loaded()]
        set_policy_value(served.settings, "commercial", "true")
        r = httpx.post(base + "/v1/chat/completions", json=chat, timeout=60)
        assert r.status_code == 403 and "NonCommercial" in r.json()["error"]["message"]
        r = httpx.post(base + "/api/generate", json=gen, timeout=60)
        assert r.status_code == 403 and "NonCommercial" in r.json()["error"]
        r = httpx.post(base + "/api/embed", json={"model": "nc-live", "input": "x"}, timeout=60)
        assert r.status_code == 403
        # an allowed model keeps answering under the new policy
        ok = {**chat, "model": "smollm2:135m"}
        assert httpx.post(base + "/v1/chat/completions", json=ok, timeout=120).status_code == 200
        set_policy_value(served.settings, "commercial", "false")
        assert httpx.post(base + "/api/generate", json=gen, timeout=120).status_code == 200
    finally:
        (served.settings.home / "policy.toml").unlink(missing_ok=True)
        served.call(served.main.state.pool.unload("nc-live:latest"))
        store.remove(["nc-live"])
