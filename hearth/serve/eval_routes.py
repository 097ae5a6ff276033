"""/api/evals: the stored `hearth eval` runs for the web UI's Leaderboard page — the
leaderboard (one row per model and weight mode, one column per task, the average) and
every run with its primary metric. Read-only; runs are started with `hearth eval`. Behind
the key when auth is on. Never touches tensors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Depends

from hearth.eval.leaderboard import leaderboard_rows, render
from hearth.eval.results import ResultStore, RunRecord
from hearth.eval.tasks import LEADERBOARD, TASKS
from hearth.serve.auth import require_key
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
        return {"tasks": list(LEADERBOARD), "leaderboard": board, "runs": [_run(r) for r in runs]}

    return await asyncio.to_thread(build)
