"""The leaderboard table from stored runs: columns, average, marks, formats."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from hearth.eval.leaderboard import leaderboard_rows, render
from hearth.eval.results import ResultStore, RunSpec
from hearth.eval.tasks import LEADERBOARD, TASKS
from hearth.eval.tasks.base import MetricResult


def _store_run(
    store: ResultStore, model: str, task: str, value: float, quant: str = "none", **kw: int
) -> None:
    t = TASKS[task]
    spec = RunSpec(
        model, task, kw.get("shots", t.num_fewshot), 1234, limit=kw.get("limit"), quant=quant
    )
    run_id = store.start(spec, 10)
    store.finish(run_id, [MetricResult(t.primary_metric, value, 0.01, 10, t.primary_subtask)])


def test_rows_average_and_marks(tmp_path: Path) -> None:
    store = ResultStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    for i, task in enumerate(LEADERBOARD):
        _store_run(store, "full", task, 0.1 * (i + 1))
    _store_run(store, "partial", "arc_challenge", 0.9, shots=5, limit=3)
    _store_run(store, "full", "arc_challenge", 0.05)  # newer run replaces the older one
    rows = leaderboard_rows(store.runs())
    assert [r.model_name for r in rows] == ["full", "partial"]
    full, partial = rows
    assert full.scores["arc_challenge"] == pytest.approx(5.0)
    assert full.scores["gsm8k"] == pytest.approx(60.0)
    assert full.average == pytest.approx((5 + 20 + 30 + 40 + 50 + 60) / 6)
    assert full.standard
    assert partial.average is None and partial.scores["mmlu"] is None
    assert partial.differences == ("arc_challenge 5-shot (leaderboard: 25)", "arc_challenge limit 3")

    parsed = list(csv.reader(io.StringIO(render(rows, "csv"))))
    assert parsed[0][:3] == ["model", "digest", "arc_challenge"]
    assert parsed[2][0] == "partial *"
    data = json.loads(render(rows, "json"))
    assert data[0]["scores"]["hellaswag"] == pytest.approx(20.0)
    assert data[1]["leaderboard_settings"] is False
    markdown = render(rows, "markdown")
    assert markdown.splitlines()[0].startswith("| model | digest | arc_challenge |")
    assert "| partial * |" in markdown and "settings differ" in markdown
    with pytest.raises(ValueError, match="format"):
        render(rows, "xml")


def test_a_quantized_run_is_its_own_row(tmp_path: Path) -> None:
    store = ResultStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    _store_run(store, "m", "hellaswag", 0.40)
    _store_run(store, "m", "hellaswag", 0.38, quant="int4")
    rows = leaderboard_rows(store.runs())
    assert sorted((r.label, r.scores["hellaswag"]) for r in rows) == [
        ("m", pytest.approx(40.0)),
        ("m (int4)", pytest.approx(38.0)),
    ]
    assert {d["quant"] for d in json.loads(render(rows, "json"))} == {"none", "int4"}
    assert "| m (int4) |" in render(rows, "markdown")
