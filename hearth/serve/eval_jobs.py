"""Evaluation runs started from the web UI's Leaderboard page: `EvalJobs` checks a request
(tasks, limit, weight mode, model in the store, data files present), then scores it in a
background thread with the same runner as `hearth eval`, storing each task's run as that
command does. One job at a time (a run keeps the CPU busy for minutes; two would only
share it); the job's progress (items done of total, per task) is kept in memory for
`GET /api/evals/jobs/{id}`. Knows nothing of HTTP."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hearth.config import Settings
from hearth.errors import InvalidParameterError

if TYPE_CHECKING:
    from hearth.eval.lm import LanguageModel
    from hearth.eval.tasks.base import Task

log = logging.getLogger("hearth.serve.evals")

# as `hearth eval`: scoring is prefill, long steps keep most prompts in one chunk
EVAL_STEP_TOKENS = 2048
RUNNING, COMPLETE, FAILED = "running", "complete", "failed"


class EvalBusyError(Exception):
    """Another evaluation job is still running."""


@dataclass
class EvalJob:
    id: int
    model: str
    tasks: list[str]
    limit: int | None
    quant: str
    status: str = RUNNING
    # task -> [items done, items total]; filled in as each task starts
    progress: dict[str, list[int]] = field(default_factory=dict)
    run_ids: list[int] = field(default_factory=list)
    error: str | None = None
    started: float = field(default_factory=time.time)
    ended: float | None = None

    def to_dict(self) -> dict[str, Any]:
        done = sum(d for d, _ in self.progress.values())
        total = sum(t for _, t in self.progress.values())
        return {
            "id": self.id,
            "model": self.model,
            "tasks": list(self.tasks),
            "limit": self.limit,
            "quant": self.quant,
            "status": self.status,
            "items_done": done,
            "items_total": total,
            "progress": {k: {"done": d, "total": t} for k, (d, t) in self.progress.items()},
            "run_ids": list(self.run_ids),
            "error": self.error,
            "elapsed_s": round((self.ended or time.time()) - self.started, 3),
        }


def _engine_lm(settings: Settings, model: str, quant: str) -> LanguageModel:
    from hearth.engine.llm import LLM
    from hearth.eval.backends.engine_backend import EngineLM

    llm = LLM(model, settings=settings, quant=quant, max_num_batched_tokens=EVAL_STEP_TOKENS)
    return EngineLM.from_llm(llm)


class EvalJobs:
    """The server's evaluation jobs: at most one running, the finished ones kept for
    their progress and outcome until the server stops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[int, EvalJob] = {}
        self._next = 0

    def get(self, job_id: int) -> EvalJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [j.to_dict() for j in self._jobs.values()]

    def start(
        self, settings: Settings, model: str, tasks: str, limit: int | None, quant: str
    ) -> EvalJob:
        """Check the request, then start scoring in the background (EvalBusyError while
        another job runs; the error tree's errors for a bad request)."""
        from hearth.eval.data import resolve_data_dir
        from hearth.eval.tasks import resolve_tasks
        from hearth.model.quant_modes import QUANT_MODES
        from hearth.store.store import Store

        if limit is not None and limit <= 0:
            raise InvalidParameterError("limit", f"limit must be a positive number, got {limit}")
        if quant not in QUANT_MODES:
            raise InvalidParameterError(
                "quant", f"quant must be one of {', '.join(QUANT_MODES)}, got '{quant}'"
            )
        task_list = resolve_tasks(tasks)
        root = resolve_data_dir(None, settings)
        for task in task_list:
            task.check_files(root)
        digest = Store(settings).get(model).digest  # not stored: NotFoundError (404)
        with self._lock:
            if any(j.status == RUNNING for j in self._jobs.values()):
                raise EvalBusyError("an evaluation is already running; wait for it to finish")
            self._next += 1
            job = EvalJob(self._next, model, [t.name for t in task_list], limit, quant)
            self._jobs[job.id] = job
        thread = threading.Thread(
            target=self._run,
            args=(job, settings, task_list, root, digest),
            name=f"hearth-eval-{job.id}",
            daemon=True,
        )
        thread.start()
        return job

    def _run(
        self, job: EvalJob, settings: Settings, task_list: list[Task], root: Any, digest: str
    ) -> None:
        from hearth.eval.results import ResultStore, RunSpec
        from hearth.eval.runner import run_task
        from hearth.eval.tasks import Settings as TaskSettings

        def on_progress(name: str, done: int, total: int) -> None:
            with self._lock:
                job.progress[name] = [done, total]

        try:
            lm = _engine_lm(settings, job.model, job.quant)
            store = ResultStore(settings.db_url)
            for task in task_list:
                shots = task.num_fewshot
                spec = RunSpec(
                    model_name=job.model,
                    task=task.name,
                    num_fewshot=shots,
                    seed=1234,
                    limit=job.limit,
                    model_digest=digest,
                    quant=job.quant,
                )
                task_settings = TaskSettings(num_fewshot=shots, seed=1234, limit=job.limit)
                report = run_task(lm, task, root, task_settings, spec, store, progress=on_progress)
                if report.run_id is not None:
                    with self._lock:
                        job.run_ids.append(report.run_id)
            status, error = COMPLETE, None
        except Exception as exc:  # the job reports it; the server keeps serving
            log.exception("evaluation job %d failed", job.id)
            status, error = FAILED, str(exc) or type(exc).__name__
        with self._lock:
            job.status, job.error, job.ended = status, error, time.time()
