"""/api/blobs/:digest against a real `hearth serve`: HEAD finds a blob or not, POST stores a
body larger than the JSON body limit, checked against its digest (a mismatch stores
nothing), and the official `ollama` client's create_blob + create(files=...) make a model
from an uploaded GGUF that then answers a chat."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from tests.serve.conftest import MODEL, Served


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.main.url, timeout=120) as client:
        yield client


def test_upload_check_and_mismatch(http: httpx.Client, served: Served) -> None:
    data = os.urandom(5 << 20)  # 5 MiB: over the server's 4 MiB limit for JSON bodies
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert http.head(f"/api/blobs/{digest}").status_code == 404
    assert http.post(f"/api/blobs/{digest}", content=data).status_code == 201
    assert http.head(f"/api/blobs/{digest}").status_code == 200
    assert http.head(f"/api/blobs/{digest.replace(':', '-')}").status_code == 200
    blob = served.settings.blobs_dir / ("sha256-" + digest.removeprefix("sha256:"))
    assert blob.read_bytes() == data
    assert http.post(f"/api/blobs/{digest}", content=data).status_code == 200  # already there

    other = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    r = http.post(f"/api/blobs/{other}", content=b"not that")
    assert r.status_code == 400 and "digest mismatch" in r.json()["error"]
    assert http.head(f"/api/blobs/{other}").status_code == 404
    partial = served.settings.blobs_dir / ".partial"
    assert not partial.exists() or not any(partial.iterdir())  # nothing half-kept
    r = http.head("/api/blobs/md5:abc")
    assert r.status_code == 400
    assert http.post("/api/blobs/sha256:xyz", content=b"x").status_code == 400


def test_official_client_creates_from_an_uploaded_gguf(served: Served, tmp_path: Path) -> None:
    client = ollama.Client(host=served.main.url, timeout=300)
    try:
        digest = client.create_blob(served.model_path)
        done = client.create(
            model="uploaded", files={"model.gguf": digest}, parameters={"num_predict": 3}
        )
        assert done.status == "success"
        assert "uploaded:latest" in [m.model for m in client.list().models]
        info = client.show("uploaded")
        assert info.modelfile and f"model.gguf@{digest}" in info.modelfile
        reply = client.chat(model="uploaded", messages=[{"role": "user", "content": "Hi"}])
        assert reply.eval_count is not None and 0 < reply.eval_count <= 3
        client.delete("uploaded")
    finally:
        client._client.close()


def test_create_with_an_uploaded_adapter(http: httpx.Client) -> None:
    """`adapters` names uploaded blobs too: the PEFT files are stored beside the base's."""
    digests = {}
    for name, data in (("adapter_config.json", b'{"r": 8}'), ("adapter_model.safetensors", b"x")):
        digests[name] = "sha256:" + hashlib.sha256(data).hexdigest()
        assert http.post(f"/api/blobs/{digests[name]}", content=data).status_code in (200, 201)
    r = http.post(
        "/api/create",
        json={"model": "adapted", "from": MODEL, "adapters": digests, "stream": False},
    )
    assert r.status_code == 200, r.text
    shown = http.post("/api/show", json={"model": "adapted"}).json()["modelfile"]
    assert (
        f"FROM {MODEL}" in shown
        and f"adapter_config.json@{digests['adapter_config.json']}" in shown
    )
    r = http.post(
        "/api/create",
        json={
            "model": "adapted2",
            "from": MODEL,
            "adapters": {"x.bin": digests["adapter_config.json"]},
        },
    )
    assert r.status_code == 400 and "PEFT" in r.json()["error"]
    assert http.request("DELETE", "/api/delete", json={"model": "adapted"}).status_code == 200
