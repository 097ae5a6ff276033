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


def test_quant_is_part_of_the_run(tmp_path: Path) -> None:
    store = ResultStore(f"sqlite:///{tmp_path / 'hearth.db'}")
    plain = RunSpec("m", "winogrande", 5, 1234)
    int4 = RunSpec("m", "winogrande", 5, 1234, quant="int4")
    assert plain.key != int4.key
    run_id = store.start(int4, 3)
    assert store.resumable(int4) == run_id and store.resumable(plain) is None
    assert store.get(run_id).spec.quant == "int4"
    with pytest.raises(ValueError, match="quant"):
        RunSpec("m", "winogrande", 5, 1234, quant="int3")


def test_database_from_before_quant_gets_the_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "hearth.db"
    store = ResultStore(f"sqlite:///{path}")
    spec = RunSpec("old", "winogrande", 5, 1234, limit=2)
    run_id = store.start(spec, 2)
    store.finish(run_id, [MetricResult("acc", 0.5, 0.5, 2)])
    store.engine.dispose()
    with sqlite3.connect(path) as conn:  # the table as the first release made it
        conn.execute("ALTER TABLE eval_runs DROP COLUMN quant")
    from hearth.db import _engines

    _engines.clear()  # a new process: nothing cached about the old schema
    again = ResultStore(f"sqlite:///{path}")
    (record,) = again.runs()
    assert record.spec == spec and record.spec.quant == "none"
    assert record.metric("acc") == MetricResult("acc", 0.5, 0.5, 2)
    assert again.resumable(spec) is None  # the same key as before: finished, not resumed
