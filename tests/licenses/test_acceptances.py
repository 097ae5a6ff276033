"""Acceptances in the real SQLite database: who, when, which license, which use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hearth.config import load_settings
from hearth.licenses.acceptances import (
    accepted_license_ids,
    current_user,
    list_acceptances,
    record_acceptance,
)


def test_record_and_list(hearth_home: Path) -> None:
    settings = load_settings()
    assert list_acceptances(settings) == []
    before = datetime.now(UTC)
    first = record_acceptance(settings, "sha256:aa", "gemma", "pull")
    record_acceptance(settings, "sha256:bb", "llama3.1", "serve", user="alice")
    rows = list_acceptances(settings)
    assert [(a.model_digest, a.license_id, a.user, a.use) for a in rows] == [
        ("sha256:aa", "gemma", current_user(), "pull"),
        ("sha256:bb", "llama3.1", "alice", "serve"),
    ]
    assert rows[0] == first
    assert before - timedelta(seconds=1) <= rows[0].accepted_at <= datetime.now(UTC)
    assert rows[0].accepted_at.tzinfo is not None
    assert accepted_license_ids(settings, "sha256:aa") == {"gemma"}
    assert accepted_license_ids(settings, "sha256:cc") == frozenset()
    assert (hearth_home / "hearth.db").exists()
