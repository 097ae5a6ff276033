"""`hearth keys create|list|revoke` and `hearth serve`'s refusal to bind a public address
without a key, through the real CLI entry point and a temporary HEARTH_HOME."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hearth.cli import main
from hearth.config import load_settings
from hearth.serve.keys import verify_key


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


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
