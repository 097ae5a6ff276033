"""/api/evals: the stored `hearth eval` runs for the web UI's Leaderboard page — the
leaderboard (one row per model and weight mode, one column per task, the average) and
every run with its primary metric; `POST /api/evals` starts a run on the server (one at a
time, 409 while one runs; eval_jobs.py) and `GET /api/evals/jobs/{id}` follows its
progress. Behind the key when auth is on. Never touches tensors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from hearth.eval.leaderboard import leaderboard_rows, render
from hearth.eval.results import ResultStore, RunRecord
from hearth.eval.tasks import LEADERBOARD, TASKS
from hearth.model.quant_modes import REFERENCE_QUANT
from hearth.serve.auth import require_key
from hearth.serve.eval_jobs import EvalBusyError
from hearth.serve.state import ServerState, get_state

router = APIRouter(prefix="/api/evals", dependencies=[Depends(require_key)], tags=["evals"])


def _run(run: RunRecord) -> dict[str, Any]:
    task = TASKS.get(run.spec.task)
    primary = run.metric(task.primary_metric, task.primary_subtask) if task else None
    return {
        "id": run.id,
        "model": run.spec.model_name,
        "quant": run.spec.quant,
        "task": run.spec.task,
        "num_fewshot": run.spec.num_fewshot,
        "limit": run.spec.limit,
        "status": run.status,
        "num_items": run.num_items,
        "num_scored": run.num_scored,
        "metric": task.primary_metric if task else None,
        "value": primary.value if primary else None,
        "stderr": primary.stderr if primary else None,
        "duration_s": run.duration_s,
        "started_at": run.started_at.isoformat(),
    }


@router.get("")
async def evals(state: ServerState = Depends(get_state)) -> dict[str, Any]:
    def build() -> dict[str, Any]:
        runs = ResultStore(state.settings.db_url).runs(status=None)
        board = json.loads(render(leaderboard_rows(runs), "json"))
        return {
            "tasks": list(LEADERBOARD),
            "leaderboard": board,
            "runs": [_run(r) for r in runs],
            "jobs": state.evals.all(),
        }

    return await asyncio.to_thread(build)


class EvalRequest(BaseModel):
    model: str = Field(min_length=1, description="a stored model name")
    tasks: str = Field("leaderboard", description="comma-separated tasks, or 'leaderboard'")
    limit: int | None = Field(None, description="score only the first N items of each task")
    quant: str = Field(REFERENCE_QUANT, description="none, auto, int8 or int4")


@router.post("", status_code=202)
async def start_eval(req: EvalRequest, state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Start `hearth eval` on the server with its data ($HEARTH_EVAL_DATA or
    $HEARTH_HOME/eval-data); the answer is the job, to follow at /api/evals/jobs/{id}."""
    try:
        job = await asyncio.to_thread(
            state.evals.start, state.settings, req.model, req.tasks, req.limit, req.quant
        )
    except EvalBusyError as exc:
        raise HTTPException(409, str(exc)) from exc
    return job.to_dict()


@router.get("/jobs/{job_id}")
async def eval_job(job_id: int, state: ServerState = Depends(get_state)) -> dict[str, Any]:
    job = state.evals.get(job_id)
    if job is None:
        raise HTTPException(404, f"no evaluation job {job_id}")
    return job.to_dict()
