"""Runs tasks on a LanguageModel: renders the items, sends them in batches (all
log-likelihood requests of a batch in one call, so the backend can batch them and share
their prefixes), scores each item, keeps every batch's scores in the ResultStore as it
goes (a Ctrl-C keeps what was scored; `resume=True` continues the latest unfinished run
with the same settings), and aggregates the task's numbers at the end. Per-item
predictions go to a JSONL file when `samples_dir` is given.

Knows nothing of the CLI, HTTP or the engine: any LanguageModel will do."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.eval.lm import LanguageModel
from hearth.eval.results import INTERRUPTED, ResultStore, RunSpec
from hearth.eval.tasks.base import Item, MetricResult, Scored, Settings, Task

# called as progress(task_name, items_done, items_total) after every batch
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TaskReport:
    """One task's outcome: its numbers, how many items, how long the scoring took (all
    sessions of a resumed run) and which stored run holds it."""

    task: str
    spec: RunSpec
    results: tuple[MetricResult, ...]
    num_items: int
    duration_s: float
    run_id: int | None = None
    num_resumed: int = 0
    samples_path: str | None = None

    def metric(self, name: str, subtask: str = "") -> MetricResult | None:
        for r in self.results:
            if r.metric == name and r.subtask == subtask:
                return r
        return None

    @property
    def items_per_s(self) -> float:
        return self.num_items / self.duration_s if self.duration_s > 0 else float("inf")


def _results(lm: LanguageModel, batch: Sequence[Item]) -> list[list[Any]]:
    """Each item's raw results: its (ll, is_greedy) pairs, or its one generated text."""
    out: list[list[Any]] = [[] for _ in batch]
    requests = [(i, r) for i, item in enumerate(batch) for r in item.requests]
    if requests:
        for (i, _), res in zip(requests, lm.loglikelihood([r for _, r in requests]), strict=True):
            out[i].append(res)
    generations = [(i, item.generation) for i, item in enumerate(batch) if item.generation]
    if generations:
        texts = lm.generate_until([g for _, g in generations if g is not None])
        for (i, _), text in zip(generations, texts, strict=True):
            out[i].append(text)
    return out


def _sample_record(task: Task, item: Item, scored: Scored) -> dict[str, Any]:
    record: dict[str, Any] = {"task": task.name, "index": item.index, "doc_id": item.doc_id}
    if item.subtask:
        record["subtask"] = item.subtask
    if item.requests:
        record["context"] = item.requests[0][0] if len({c for c, _ in item.requests}) == 1 else None
        record["requests"] = [list(r) for r in item.requests] if record["context"] is None else None
        record["continuations"] = [c for _, c in item.requests]
    if item.generation:
        record["context"] = item.generation.context
        record["until"] = list(item.generation.until)
    record["gold"] = item.gold
    record["prediction"] = scored.prediction
    record["scores"] = dict(scored.scores)
    return {k: v for k, v in record.items() if v is not None}


def run_task(
    lm: LanguageModel,
    task: Task,
    data_dir: Path,
    settings: Settings,
    spec: RunSpec,
    store: ResultStore | None = None,
    *,
    resume: bool = False,
    samples_dir: Path | None = None,
    batch_items: int = 64,
    progress: Progress | None = None,
) -> TaskReport:
    """Score `task` with `lm`; store the run if `store` is given."""
    if batch_items < 1:
        raise ValueError(f"batch_items must be >= 1, got {batch_items}")
    items = task.build(data_dir, settings)
    done: dict[int, Scored] = {}
    run_id: int | None = None
    previous_s = 0.0
    if store is not None and resume:
        run_id = store.resumable(spec)
        if run_id is not None:
            store.reopen(run_id)
            done = {s.index: s for s in store.scored_items(run_id)}
            previous_s = store.get(run_id).duration_s
    samples_path: Path | None = None
    if store is not None and run_id is None:
        run_id = store.start(spec, len(items))
    if samples_dir is not None:
        samples_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{run_id}-{task.name}" if run_id is not None else f"{spec.model_name}-{task.name}"
        samples_path = samples_dir / (stem.replace("/", "_").replace(":", "_") + ".jsonl")
    if store is not None and run_id is not None and samples_path is not None:
        store.set_samples_path(run_id, str(samples_path))

    todo = [item for item in items if item.index not in done]
    num_resumed = len(items) - len(todo)
    if progress:
        progress(task.name, num_resumed, len(items))
    scored_all = dict(done)
    elapsed = 0.0
    try:
        for start in range(0, len(todo), batch_items):
            batch = todo[start : start + batch_items]
            t0 = time.perf_counter()
            raw = _results(lm, batch)
            scored = [task.score(item, res) for item, res in zip(batch, raw, strict=True)]
            took = time.perf_counter() - t0
            elapsed += took
            if store is not None and run_id is not None:
                store.add_items(run_id, scored, took)
            if samples_path is not None:
                with samples_path.open("a", encoding="utf-8") as fh:
                    for item, s in zip(batch, scored, strict=True):
                        fh.write(json.dumps(_sample_record(task, item, s)) + "\n")
            scored_all.update((s.index, s) for s in scored)
            if progress:
                progress(task.name, len(scored_all), len(items))
    except BaseException:
        # KeyboardInterrupt included: what was scored is stored; --resume continues
        if store is not None and run_id is not None:
            store.set_status(run_id, INTERRUPTED)
        raise
    results = task.aggregate([scored_all[i] for i in sorted(scored_all)])
    if store is not None and run_id is not None:
        store.finish(run_id, results)
    return TaskReport(
        task=task.name,
        spec=spec,
        results=tuple(results),
        num_items=len(items),
        duration_s=previous_s + elapsed,
        run_id=run_id,
        num_resumed=num_resumed,
        samples_path=str(samples_path) if samples_path else None,
    )
