"""`hearth config` through the real CLI: every setting with its value and source, as a
table and as JSON; a bad setting stops any verb at start-up with exit 2 and one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from cli_runner import Cli

from hearth.config import Settings


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch, hearth_home: Path) -> None:
    hearth_home.mkdir()
    for f in fields(Settings):  # the developer's own settings must not leak in
        if f.name != "home":
            monkeypatch.delenv(f"HEARTH_{f.name.upper()}", raising=False)


def test_config_json_lists_every_setting_with_its_source(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, hearth_home: Path
) -> None:
    (hearth_home / "config.toml").write_text("max_queue = 9\n")
    monkeypatch.setenv("HEARTH_PORT", "12000")
    code, out, err = cli("config", "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert list(rows) == [f.name for f in fields(Settings)]
    assert rows["port"]["value"] == 12000 and rows["port"]["source"] == "environment (HEARTH_PORT)"
    assert rows["max_queue"]["value"] == 9
    assert rows["max_queue"]["source"] == str(hearth_home / "config.toml")
    assert rows["host"]["source"] == "default" and rows["host"]["env"] == "HEARTH_HOST"
    assert all(r["meaning"] for r in rows.values())


def test_config_table(cli: Cli, hearth_home: Path) -> None:
    code, out, err = cli("config")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["SETTING", "VALUE", "SOURCE", "VARIABLE", "MEANING"]
    port = next(line for line in lines if line.startswith("port "))
    assert "11435" in port and "default" in port and "HEARTH_PORT" in port


@pytest.mark.parametrize(
    ("toml", "env", "want"),
    [
        ("port = 'abc'", {}, "must be a whole number, got 'abc'"),
        ("", {"HEARTH_PORT": "abc"}, "error: setting port (HEARTH_PORT) must be a whole number"),
        ("bogus = 1", {}, "unknown setting 'bogus'"),
    ],
)
def test_bad_setting_stops_any_verb_with_exit_2(
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    hearth_home: Path,
    toml: str,
    env: dict[str, str],
    want: str,
) -> None:
    if toml:
        (hearth_home / "config.toml").write_text(toml)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for verb in (["list"], ["config"]):
        code, _, err = cli(*verb)
        assert code == 2 and want in err


def test_bad_setting_in_a_real_process_has_no_traceback(hearth_home: Path) -> None:
    (hearth_home / "config.toml").write_text("port = 'abc'\n")
    env = {**os.environ, "HEARTH_HOME": str(hearth_home), "COLUMNS": "250"}
    proc = subprocess.run(
        [sys.executable, "-m", "hearth", "list"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "setting port (" in proc.stderr and "got 'abc'" in proc.stderr
