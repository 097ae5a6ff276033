"""The license gate when serving: a model whose license the policy forbids is answered
with 403 quoting the clause, on both APIs, and the server keeps serving the others."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gguf
import httpx
import numpy as np
import pytest

from hearth.licenses.policy import set_policy_value
from hearth.store import Store


def _nc_gguf(path: Path) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("general.license", "cc-by-nc-4.0")
    writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def commercial_policy(served, tmp_path: Path) -> Iterator[None]:  # type: ignore[no-untyped-def]
    # the served store is shared by the session: the policy is put back afterwards
    Store(served.settings).import_path(_nc_gguf(tmp_path / "nc.gguf"), "nc-model")
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
