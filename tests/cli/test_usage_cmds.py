"""`hearth usage` through the CLI entry point, over a ledger written by the server's code."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_runner import Cli

from hearth.config import load_settings
from hearth.serve.usage import UsageRecord, record_usage


def test_usage_by_key(cli: Cli, hearth_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    settings = load_settings()
    now = datetime.now(UTC)
    for key, when in (("alice", now), ("bob", now), (None, now - timedelta(days=10))):
        record_usage(settings, UsageRecord(when, "r", key, "smol:latest", "/api/chat", 200,
                                           100, 50, 0.2, 1.5, 0.75, 0.01))  # fmt: skip
    code, out, err = cli("usage", "--since", "7d", "--by", "key", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert [g["group"] for g in report["groups"]] == ["alice", "bob"]
    assert report["totals"]["prompt_tokens"] == 200
    code, out, _ = cli("usage", "--by", "day")
    assert code == 0 and "total" in out and "as of 2024-" in out and "gpt-4o-mini" in out
    code, _, err = cli("usage", "--by", "week")
    assert code == 2 and "use one of model, key, day" in err
