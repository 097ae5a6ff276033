"""`hearth data pull leaderboard` against a fake Hub on 127.0.0.1 (the endpoints
`hf_hub_download` uses: HEAD/GET resolve with ETag and X-Repo-Commit), serving Parquet files
in each upstream data set's own columns: every task's file is written in hearth's layout
and the tasks build items from it; an unreachable data set is a one-line error."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_runner import Cli

from hearth.eval.data import LEADERBOARD_FILES
from hearth.eval.hub_data import LEADERBOARD_SOURCES
from hearth.eval.tasks import LEADERBOARD, get_task
from hearth.eval.tasks.base import Settings

COMMIT = "0123456789abcdef0123456789abcdef01234567"

# three rows of each upstream data set, in its own columns
UPSTREAM: dict[str, list[dict[str, Any]]] = {
    "allenai/ai2_arc": [
        {"id": f"q{i}", "question": f"Question {i}?", "answerKey": "B",
         "choices": {"text": ["red", "blue", "green"], "label": ["A", "B", "C"]}}
        for i in range(3)
    ],
    "Rowan/hellaswag": [
        {"ind": i, "activity_label": "Baking", "ctx_a": "A man mixes flour.", "ctx_b": "he",
         "endings": ["bakes.", "sings.", "runs.", "sleeps."], "label": "0"}
        for i in range(3)
    ],
    "cais/mmlu": [
        {"question": f"What is {i}+1?", "subject": "anatomy",
         "choices": [str(i), str(i + 1), "7", "9"], "answer": 1}
        for i in range(3)
    ],
    "truthfulqa/truthful_qa": [
        {"question": "Is the sky green?",
         "mc1_targets": {"choices": ["No.", "Yes."], "labels": [1, 0]},
         "mc2_targets": {"choices": ["No.", "Never.", "Yes."], "labels": [1, 1, 0]}}
        for _ in range(3)
    ],
    "allenai/winogrande": [
        {"sentence": "The cup fell off the table because _ was slippery.", "option1": "the cup",
         "option2": "the table", "answer": "2"}
        for _ in range(3)
    ],
    "openai/gsm8k": [
        {"question": f"What is {i} times 1,000?", "answer": f"It is <<{i}*1000>>.\n#### {i},000"}
        for i in range(3)
    ],
}


class FakeHub:
    def __init__(self, requests: list[str], files: dict[str, bytes]) -> None:
        self.requests, self.files = requests, files


def _parquet(rows: list[dict[str, Any]], path: Path) -> bytes:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path.read_bytes()


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    files = {f"/datasets/{s.repo}/resolve/main/{s.path}": _parquet(
        UPSTREAM[s.repo], tmp_path / f"{i}.parquet") for i, s in enumerate(LEADERBOARD_SOURCES)}
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = unquote(urlparse(self.path).path)
            requests.append(path)
            data = files.get(path)
            if data is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # never the user's cache
    yield FakeHub(requests, files)
    server.shutdown()
    server.server_close()
    thread.join()


def test_pull_leaderboard_from_the_hub(
    fake_hub: FakeHub, tmp_path: Path, hearth_home: Path, cli: Cli
) -> None:
    dest = tmp_path / "data"
    code, out, err = cli("data", "pull", "leaderboard", "--data-dir", str(dest))
    assert code == 0, err
    assert f"to {dest}" in out
    assert sorted(s.target for s in LEADERBOARD_SOURCES) == sorted(LEADERBOARD_FILES)
    for name in LEADERBOARD:  # every task reads what was written
        shots = 0 if name == "truthfulqa_mc2" else 1  # it has no few-shot split
        items = get_task(name).build(dest, Settings(num_fewshot=shots, limit=1))
        assert len(items) == 1
    gsm = [json.loads(x) for x in (dest / "gsm8k/test.jsonl").read_text().splitlines()]
    assert gsm[2] == {"id": "test_2", "question": "What is 2 times 1,000?",
                      "answer": "It is <<2*1000>>.\n#### 2,000", "final": "2000"}
    arc = json.loads((dest / "arc_challenge/test.jsonl").read_text().splitlines()[0])
    assert arc["answer"] == 1 and arc["labels"] == ["A", "B", "C"]
    wino = json.loads((dest / "winogrande/validation.jsonl").read_text().splitlines()[0])
    assert wino["answer"] == 1 and wino["choices"] == ["the cup", "the table"]
    assert "/datasets/cais/mmlu/resolve/main/all/dev-00000-of-00001.parquet" in fake_hub.requests
    assert not (dest / ".hub-download").exists()  # the downloads are gone once converted


def test_missing_data_is_one_line(
    fake_hub: FakeHub, tmp_path: Path, hearth_home: Path, cli: Cli
) -> None:
    gone = next(k for k in fake_hub.files if k.endswith("main/test-00000-of-00001.parquet"))
    del fake_hub.files[gone]  # the Hub answers 404 for GSM8K's test split
    dest = tmp_path / "d"
    code, _, err = cli("data", "pull", "leaderboard", "--data-dir", str(dest))
    assert code != 0 and "could not download" in err and "openai/gsm8k" in err
    assert "--from DIR" in err and "Traceback" not in err
    assert not (dest / "gsm8k" / "test.jsonl").exists()
