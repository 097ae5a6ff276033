"""/api/evals through the real server: stored `hearth eval` runs as the leaderboard's rows
and as a list of runs with their primary metric, running ones included."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import httpx

from hearth.eval.results import ResultStore, RunSpec
from hearth.eval.tasks.base import MetricResult

MODEL = "smollm2:135m"
FIXTURES = Path(__file__).resolve().parents[1] / "eval" / "fixtures"


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


def test_start_eval_job(served, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """POST /api/evals runs `hearth eval` on the server: one job at a time (409), bad
    requests refused before anything starts, progress to done, the run stored."""
    # the server's own settings name the data, as HEARTH_EVAL_DATA would at its start
    state = served.main.app.state.hearth
    monkeypatch.setattr(state, "settings", replace(state.settings, eval_data=str(FIXTURES)))
    url = served.main.url
    bad = {"model": MODEL, "tasks": "nosuchtask", "limit": 1}
    assert httpx.post(f"{url}/api/evals", json=bad).status_code == 400
    assert (
        httpx.post(f"{url}/api/evals", json={**bad, "tasks": "winogrande", "limit": 0}).status_code
        == 400
    )
    missing = {"model": "nosuch:1b", "tasks": "winogrande", "limit": 1}
    assert httpx.post(f"{url}/api/evals", json=missing).status_code == 404
    body = {"model": MODEL, "tasks": "winogrande", "limit": 2}
    started = httpx.post(f"{url}/api/evals", json=body)
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["status"] == "running" and job["tasks"] == ["winogrande"]
    busy = httpx.post(f"{url}/api/evals", json=body)
    assert busy.status_code == 409 and "already running" in busy.text
    deadline = time.monotonic() + 300
    while job["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
        job = httpx.get(f"{url}/api/evals/jobs/{job['id']}").json()
    assert job["status"] == "complete", job
    assert job["items_done"] == job["items_total"] == 2 and len(job["run_ids"]) == 1
    listed = httpx.get(f"{url}/api/evals").json()
    assert any(j["id"] == job["id"] for j in listed["jobs"])
    (run,) = [r for r in listed["runs"] if r["id"] == job["run_ids"][0]]
    assert run["status"] == "complete" and run["num_scored"] == 2 and run["value"] is not None
    assert httpx.get(f"{url}/api/evals/jobs/999").status_code == 404
