"""`hearth keys create|list|revoke` and `hearth serve`'s refusal to bind a public address
without a key, through the real CLI entry point and a temporary HEARTH_HOME."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run_hearth_raw as _run

from hearth.config import load_settings
from hearth.serve.keys import verify_key


def test_keys_lifecycle(hearth_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "keys", "create", "laptop")
    secret = out.strip()
    assert code == 0 and secret.startswith("hth_") and "not shown again" in err
    assert verify_key(load_settings(), secret) is not None
    code, out, _ = _run(capsys, "--json", "keys", "list")
    listed = json.loads(out)
    assert code == 0 and [k["name"] for k in listed] == ["laptop"]
    assert secret not in out and listed[0]["revoked"] is None
    code, out, _ = _run(capsys, "keys", "revoke", "laptop")
    assert code == 0 and "revoked" in out
    assert verify_key(load_settings(), secret) is None
    code, _, err = _run(capsys, "keys", "revoke", "laptop")
    assert code != 0 and "no active key" in err


def test_serve_refuses_public_bind_without_key(
    hearth_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "serve", "--host", "0.0.0.0", "--port", "1")
    assert code != 0 and "hearth keys create NAME" in err and "0.0.0.0" in err
    assert "serving" not in out


def test_serve_refuses_a_forbidden_model_in_one_line(
    hearth_home: Path, nc_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hearth.licenses.policy import set_policy_value
    from hearth.store import Store

    Store(load_settings()).import_path(nc_gguf, "nc-model")
    set_policy_value(load_settings(), "commercial", "true")
    code, out, err = _run(capsys, "serve", "nc-model", "--port", "1")
    assert code == 3 and "NonCommercial" in err and "serving" not in out
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, _, err = _run(capsys, "serve", "no-such-model", "--port", "1")
    assert code != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # allowed, but it fails to load (a GGUF without its architecture): one line too
    set_policy_value(load_settings(), "commercial", "false")
    code, out, err = _run(capsys, "serve", "nc-model", "--port", str(_free_port()))
    assert code != 0 and "incomplete" in err and "serving" not in out
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_ollama_port_is_never_taken_from_another_server() -> None:
    import socket

    from hearth.serve.options import ServeOptions
    from hearth.serve.server import listen

    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    busy = held.getsockname()[1]
    notes: list[str] = []
    try:
        sockets = listen(ServeOptions(port=0, ollama_port=busy), notes.append)
        try:
            assert len(sockets) == 1 and sockets[0].getsockname()[1] != busy
            assert len(notes) == 1 and f"port {busy}" in notes[0] and "holds it" in notes[0]
        finally:
            for sock in sockets:
                sock.close()
        with pytest.raises(Exception, match="choose another with --port"):
            listen(ServeOptions(port=busy), notes.append)
    finally:
        held.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_on_the_ollama_port_too(hearth_home: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    import httpx

    port, ollama_port = _free_port(), _free_port()
    env = {**os.environ, "HEARTH_OLLAMA_PORT": str(ollama_port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hearth", "serve", "--port", str(port), "--ollama-port"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{ollama_port}/api/version", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.3)
        for p in (port, ollama_port):
            assert httpx.get(f"http://127.0.0.1:{p}/api/tags", timeout=10).status_code == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"127.0.0.1:{ollama_port} (Ollama's port)" in out
