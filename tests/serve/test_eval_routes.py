"""/api/evals through the real server: stored `hearth eval` runs as the leaderboard's rows
and as a list of runs with their primary metric, running ones included."""

from __future__ import annotations

import httpx

from hearth.eval.results import ResultStore, RunSpec
from hearth.eval.tasks.base import MetricResult


def test_evals_lists_runs(served) -> None:  # type: ignore[no-untyped-def]
    store = ResultStore(served.settings.db_url)
    run = store.start(RunSpec("gamma:1b", "hellaswag", 10, 1234), 40)
    store.finish(run, [MetricResult("acc_norm", 0.4, 0.02, 40)])
    running = store.start(RunSpec("gamma:1b", "arc_challenge", 25, 1234), 30)
    body = httpx.get(f"{served.main.url}/api/evals").json()
    assert body["tasks"][0] == "arc_challenge"
    (row,) = [r for r in body["leaderboard"] if r["model"] == "gamma:1b"]
    assert row["scores"]["hellaswag"] == 40.0 and row["average"] is None
    runs = {r["id"]: r for r in body["runs"]}
    assert runs[run]["value"] == 0.4 and runs[run]["metric"] == "acc_norm"
    assert runs[running]["status"] == "running" and runs[running]["value"] is None
