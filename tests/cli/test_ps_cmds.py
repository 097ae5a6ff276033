"""`hearth ps` / `hearth stop MODEL` against a real `hearth serve` on 127.0.0.1: a model
loaded by a request is listed, stop unloads it, and a missing server or model is one line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hearth.config import load_settings
from hearth.store import Store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Iterator[str]:
    home = tmp_path_factory.mktemp("ps-home")
    Store(load_settings({"HEARTH_HOME": str(home)})).import_path(smollm2_gguf, "smollm2")
    port = _free_port()
    env = {**os.environ, "HEARTH_HOME": str(home), "HEARTH_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hearth", "serve", "--port", str(port), "--kv-cache-gb", "0.1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def _hearth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hearth", *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_COLOR": "1"},
    )


def test_ps_lists_then_stop_unloads(server: str) -> None:
    empty = _hearth("ps", "--url", server)
    assert empty.returncode == 0 and "no models loaded" in empty.stdout
    load = httpx.post(server + "/api/generate", json={"model": "smollm2"}, timeout=300)
    assert load.status_code == 200 and load.json()["done_reason"] == "load"
    listed = _hearth("ps", "--url", server)
    assert listed.returncode == 0 and "smollm2:latest" in listed.stdout, listed.stderr
    as_json = json.loads(_hearth("ps", "--url", server, "--json").stdout)
    assert [m["name"] for m in as_json] == ["smollm2:latest"]
    kv = as_json[0]["kv_cache"]
    assert kv["bytes"] > 0 and kv["tokens"] > 0
    assert "KV CACHE" in listed.stdout
    assert f"{kv['bytes'] / 1e6:.0f} MB, {kv['tokens']:,} tok" in listed.stdout, listed.stdout
    stopped = _hearth("stop", "smollm2", "--url", server)
    assert stopped.returncode == 0 and "stopped 'smollm2'" in stopped.stdout, stopped.stderr
    assert "no models loaded" in _hearth("ps", "--url", server).stdout
    again = _hearth("stop", "smollm2", "--url", server)
    assert again.returncode == 1 and "is not running" in again.stderr


def test_no_server_is_one_line() -> None:
    proc = _hearth("ps", "--url", f"http://127.0.0.1:{_free_port()}")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "no hearth server answers" in proc.stderr
