"""The runner on a tiny real model: every task end to end (--limit-sized), stored runs,
Ctrl-C keeping scored items and resume continuing them, per-item sample logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eval_tiny_lm import HFReferenceLM

from hearth.eval.results import INTERRUPTED, ResultStore, RunSpec
from hearth.eval.runner import run_task
from hearth.eval.tasks import get_task
from hearth.eval.tasks.base import Settings


def _spec(task: str, shots: int, limit: int) -> RunSpec:
    return RunSpec("tiny", task, shots, 1234, limit=limit)


@pytest.mark.parametrize("name", ["arc_challenge", "hellaswag", "truthfulqa_mc2", "winogrande", "gsm8k"])
def test_task_end_to_end_with_tiny_model(name: str, eval_data: Path, reference_lm: HFReferenceLM, tmp_path: Path) -> None:
    task = get_task(name)
    store = ResultStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    settings = Settings(num_fewshot=task.num_fewshot, limit=3, max_gen_tokens=24)
    report = run_task(reference_lm, task, eval_data, settings, _spec(name, task.num_fewshot, 3), store, samples_dir=tmp_path / "s")
    assert report.num_items == 3
    main = report.metric(task.primary_metric, task.primary_subtask)
    assert main is not None and 0.0 <= main.value <= 1.0 and main.num_items == 3
    (record,) = store.runs()
    assert record.metric(task.primary_metric, task.primary_subtask) == main
    samples = [json.loads(x) for x in Path(report.samples_path or "").read_text().splitlines()]
    assert [s["index"] for s in samples] == [0, 1, 2]
    assert all("scores" in s and "prediction" in s for s in samples)


class Interrupting:
    """Passes calls to a LanguageModel and raises KeyboardInterrupt on call `at`."""

    def __init__(self, lm: Any, at: int) -> None:
        self.lm, self.at, self.calls = lm, at, 0

    def loglikelihood(self, requests: Any) -> Any:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.lm.loglikelihood(requests)

    def generate_until(self, requests: Any) -> Any:
        return self.lm.generate_until(requests)


def test_interrupt_keeps_items_and_resume_continues(eval_data: Path, reference_lm: HFReferenceLM, tmp_path: Path) -> None:
    task = get_task("winogrande")
    store = ResultStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    settings = Settings(num_fewshot=5, limit=6)
    spec = _spec("winogrande", 5, 6)
    with pytest.raises(KeyboardInterrupt):
        run_task(Interrupting(reference_lm, at=3), task, eval_data, settings, spec, store, batch_items=2)
    (run,) = store.runs(status=None)
    assert run.status == INTERRUPTED and run.num_scored == 4
    counting = Interrupting(reference_lm, at=-1)
    report = run_task(counting, task, eval_data, settings, spec, store, resume=True, batch_items=2)
    assert report.num_resumed == 4 and counting.calls == 1  # only the last 2 items ran
    assert report.run_id == run.id
    fresh = run_task(reference_lm, task, eval_data, settings, spec, None)
    assert report.results == fresh.results  # resumed == uninterrupted
    assert store.runs()[0].num_scored == 6
