"""hf:// against a fake Hub on 127.0.0.1: the endpoints `snapshot_download` uses (model
info, recursive tree, HEAD/GET resolve with ETag and X-Repo-Commit), serving a tiny model
the test makes."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from hearth.config import load_settings
from hearth.errors import SourceError
from hearth.store import Store
from hearth.store.hub import HubSpec

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, repo_id: str, folder: Path) -> None:
        self.repo_id = repo_id
        self.files = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file()
        }
        self.requests: list[str] = []

    def tree(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for path, data in sorted(self.files.items()):
            entry: dict[str, object] = {
                "type": "file",
                "path": path,
                "size": len(data),
                "oid": _sha1(data),
            }
            if path.endswith(".safetensors"):  # weights are LFS files on the real Hub
                entry["lfs"] = {
                    "oid": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                    "pointerSize": 134,
                }
            out.append(entry)
        return out


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(
            self, code: int, body: bytes = b"", headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, data: object) -> None:
            self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"})

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = unquote(urlparse(self.path).path)
            hub.requests.append(f"{self.command} {path}")
            api = f"/api/models/{hub.repo_id}/"
            if path.startswith(api + "revision/"):
                siblings = [{"rfilename": f} for f in hub.files]
                return self._json({"id": hub.repo_id, "sha": COMMIT, "siblings": siblings})
            if path.startswith(api + "tree/"):
                return self._json(hub.tree())
            prefix = f"/{hub.repo_id}/resolve/"
            if path.startswith(prefix):
                name = path.removeprefix(prefix).split("/", 1)[1]
                if name in hub.files:
                    data = hub.files[name]
                    etag = (
                        hashlib.sha256(data).hexdigest()
                        if name.endswith(".safetensors")
                        else _sha1(data)
                    )
                    headers = {"ETag": f'"{etag}"', "X-Repo-Commit": COMMIT}
                    return self._send(
                        200, data, headers | {"Content-Type": "application/octet-stream"}
                    )
            self._send(
                404,
                b"not found",
                {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"},
            )

    return Handler


@pytest.fixture
def fake_hub(tiny_hf: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    hub = FakeHub("hearth-test/Tiny-Llama", tiny_hf)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HOME", str(tiny_hf.parent / "hf-home"))  # never the user's cache
    # huggingface_hub caches HF_ENDPOINT at import (before this test, in a full run): the
    # store must honour the variable as set now, which is what this checks
    yield hub
    server.shutdown()
    server.server_close()
    thread.join()


def test_pull_from_the_hub(fake_hub: FakeHub, hearth_home: Path, tiny_hf: Path) -> None:
    store = Store(load_settings())
    seen: list[tuple[str, int, int]] = []
    record = store.pull("hf://hearth-test/Tiny-Llama", progress=lambda *a: seen.append(a))
    assert record.name == "tiny-llama:latest" and record.format == "hf"
    assert record.source == "hf://hearth-test/Tiny-Llama"
    assert (record.architecture, record.license_id, record.context_length) == ("llama", "mit", 256)
    assert "GET /api/models/hearth-test/Tiny-Llama/revision/main" in fake_hub.requests
    downloads = [s for s in seen if s[0].startswith("download")]
    assert downloads and downloads[-1][1] == downloads[-1][2] == sum(
        len(d) for d in fake_hub.files.values()
    )
    folder = store.locate("tiny-llama").path
    for rel, data in fake_hub.files.items():
        assert (folder / rel).read_bytes() == data
    local = store.import_path(tiny_hf, name="local")
    assert local.digest == record.digest  # same bytes, same model digest
    pinned = store.pull(f"hf://hearth-test/Tiny-Llama@{COMMIT}", name="tiny:pinned")
    assert pinned.digest == record.digest


def test_unknown_repo_is_a_source_error(fake_hub: FakeHub, hearth_home: Path) -> None:
    store = Store(load_settings())
    with pytest.raises(SourceError, match="could not download hearth-test/Nope from the Hub"):
        store.pull("hf://hearth-test/Nope")
    assert store.list() == []


def test_spec_parsing() -> None:
    assert HubSpec.parse("hf://Org/Repo.v2@refs-pr-1") == HubSpec("Org", "Repo.v2", "refs-pr-1")
    for bad in ("hf://org", "hf://org/repo/extra", "hf://../x", "hf://org/re po"):
        with pytest.raises(SourceError, match="expected hf://ORG/REPO"):
            HubSpec.parse(bad)
