"""The lm-eval task configs of the agreement run (lmeval_tasks.py) make lm-eval build
exactly hearth's requests: for the first items of every task (and two MMLU subjects),
lm-eval's own instances — its templates, few-shot samplers and seed over the local
data — equal hearth's (context, continuation) pairs / generation contexts. Fast: no
model runs, so CI checks the configs the slow agreement test relies on."""

from __future__ import annotations

from pathlib import Path

import pytest
from eval_tiny_lm import MMLU_SUBJECTS
from lmeval_tasks import write_configs

from hearth.eval.tasks import LEADERBOARD, get_task
from hearth.eval.tasks.base import Settings

LIMIT = 3
SUBJECTS = ("abstract_algebra", "high_school_physics")  # the fixture's two


def test_lm_eval_builds_hearths_requests(
    eval_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    names = write_configs(eval_data, tmp_path / "cfg")
    assert len(names["mmlu"]) == MMLU_SUBJECTS
    manager = TaskManager(include_path=str(tmp_path / "cfg"), include_defaults=False)
    wanted = {f"hearth_{t}": t for t in LEADERBOARD if t != "mmlu"} | {
        f"hearth_mmlu_{s}": "mmlu" for s in SUBJECTS
    }
    loaded = manager.load(list(wanted))["tasks"]
    for lm_name, ours in wanted.items():
        lm_task = loaded[lm_name]
        lm_task.set_fewshot_seed(seed=1234)
        lm_task.build_all_requests(limit=LIMIT, rank=0, world_size=1)
        instances = sorted(lm_task.instances, key=lambda i: (i.doc_id, i.idx))
        task = get_task(ours)
        items = task.build(eval_data, Settings(num_fewshot=task.num_fewshot, limit=LIMIT))
        if ours == "mmlu":
            items = [i for i in items if i.subtask == lm_name.removeprefix("hearth_mmlu_")]
        assert len({i.doc_id for i in instances}) == len(items) == LIMIT, lm_name
        if ours == "gsm8k":
            assert [i.arguments[0] for i in instances] == [
                it.generation.context for it in items if it.generation
            ]
            assert list(instances[0].arguments[1]["until"]) == list(items[0].generation.until)  # type: ignore[union-attr]
        else:
            assert [tuple(i.arguments) for i in instances] == [
                r for it in items for r in it.requests
            ], lm_name
