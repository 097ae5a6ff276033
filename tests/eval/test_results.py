"""Runs in a real SQLite database: round trip, resumable lookup, items, metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth import __version__
from hearth.errors import NotFoundError
from hearth.eval.results import COMPLETE, INTERRUPTED, ResultStore, RunSpec
from hearth.eval.tasks.base import MetricResult, Scored


def test_round_trip(tmp_path: Path) -> None:
    store = ResultStore(f"sqlite:///{tmp_path / 'hearth.db'}")
    spec = RunSpec("smollm2:135m", "arc_challenge", 25, 1234, limit=5, model_digest="sha256:ab", backend="openai")
    run_id = store.start(spec, num_items=5)
    store.add_items(run_id, [Scored(0, "d0", "", {"acc": 1.0}), Scored(1, "d1", "", {"acc": 0.0})], 1.5)
    assert store.resumable(spec) == run_id
    assert store.resumable(RunSpec("smollm2:135m", "arc_challenge", 24, 1234, limit=5)) is None
    store.set_status(run_id, INTERRUPTED)
    assert [s.scores for s in store.scored_items(run_id)] == [{"acc": 1.0}, {"acc": 0.0}]
    store.finish(run_id, [MetricResult("acc", 0.5, 0.5, 2), MetricResult("acc", 1.0, None, 1, "x")])
    assert store.resumable(spec) is None  # complete runs are not resumed
    (record,) = store.runs()
    assert record.spec == spec
    assert record.status == COMPLETE
    assert record.num_items == 5 and record.num_scored == 2
    assert record.duration_s == pytest.approx(1.5)
    assert record.hearth_version == __version__
    assert record.metric("acc") == MetricResult("acc", 0.5, 0.5, 2)
    assert record.metric("acc", "x") == MetricResult("acc", 1.0, None, 1, "x")
    assert record.started_at.tzinfo is not None and record.finished_at is not None
    # a second store on the same file sees the same rows
    again = ResultStore(f"sqlite:///{tmp_path / 'hearth.db'}")
    assert again.get(run_id).metrics == record.metrics
    with pytest.raises(NotFoundError):
        again.get(run_id + 100)


def test_spec_checks() -> None:
    with pytest.raises(ValueError, match="limit"):
        RunSpec("m", "arc_challenge", 25, 1234, limit=0)
    with pytest.raises(ValueError, match="model_name"):
        RunSpec("", "arc_challenge", 25, 1234)
    assert RunSpec("m", "t", 1, 2).key != RunSpec("m", "t", 1, 3).key
