"""hf://datasets/... as training data, through huggingface_hub against a fake Hub on
127.0.0.1 (the pattern of tests/eval/test_hub_data.py, plus the tree listing a whole
repository needs): a repository's train files, one named file, a missing one in one line."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from hearth.errors import UserInputError
from hearth.tune.hub_data import parse_hub_data
from hearth.tune.prepare import read_source

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "acme/notes"


def _jsonl(rows: list[dict[str, str]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


FILES = {
    "data/train.jsonl": _jsonl([{"prompt": f"Q{i}", "completion": f"A{i}"} for i in range(3)]),
    "data/test.jsonl": _jsonl([{"prompt": "held", "completion": "out"}]),
    "README.md": b"# notes\n",
}


class FakeHub:
    def __init__(self, requests: list[str], endpoint: str) -> None:
        self.requests, self.endpoint = requests, endpoint


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    requests: list[str] = []
    tree = json.dumps([
        {"type": "file", "path": p, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
        for p, d in FILES.items()
    ]).encode()  # fmt: skip

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = unquote(urlparse(self.path).path)
            requests.append(path)
            prefix = f"/datasets/{REPO}/resolve/main/"
            if path.startswith(f"/api/datasets/{REPO}/tree/main"):
                data, kind = tree, "application/json"
            elif path.startswith(prefix) and path.removeprefix(prefix) in FILES:
                data, kind = FILES[path.removeprefix(prefix)], "application/octet-stream"
            else:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # never the user's cache
    yield FakeHub(requests, f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_repository_gives_its_train_files(fake_hub: FakeHub) -> None:
    rows = read_source(f"hf://datasets/{REPO}", fake_hub.endpoint)
    assert [r.fields["prompt"] for r in rows] == ["Q0", "Q1", "Q2"]
    assert rows[0].source.endswith("train.jsonl:1")
    assert f"/datasets/{REPO}/resolve/main/data/test.jsonl" not in fake_hub.requests


def test_one_named_file(fake_hub: FakeHub) -> None:
    rows = read_source(f"hf://datasets/{REPO}/data/test.jsonl", fake_hub.endpoint)
    assert [r.fields["completion"] for r in rows] == ["out"]


def test_a_missing_file_is_one_line(fake_hub: FakeHub) -> None:
    with pytest.raises(UserInputError, match=r"cannot fetch hf://datasets/acme/notes/nope\.jsonl"):
        read_source(f"hf://datasets/{REPO}/nope.jsonl", fake_hub.endpoint)


def test_parse() -> None:
    assert parse_hub_data("hf://datasets/a/b@v2/x/y.csv") == parse_hub_data(
        "hf://datasets/a/b@v2/x/y.csv"
    )
    hub = parse_hub_data("hf://datasets/a/b@v2/x/y.csv")
    assert (hub.repo_id, hub.path, hub.revision) == ("a/b", "x/y.csv", "v2")
    with pytest.raises(UserInputError, match="hf://datasets/ORG/NAME"):
        parse_hub_data("hf://datasets/only")
