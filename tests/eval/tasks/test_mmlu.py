"""MMLU prompts (description, lettered options, first 5 dev rows of the subject) and the
leaderboard's unweighted subject average."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_tiny_lm import MMLU_SUBJECTS
from lmeval_ref import plain_context, render, sampler, yaml_config

from hearth.eval.tasks.base import Scored, Settings
from hearth.eval.tasks.mmlu import Mmlu


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().split("\n") if line]


def test_item0_prompt_by_documented_format(eval_data: Path) -> None:
    dev = [d for d in rows(eval_data / "mmlu/dev.jsonl") if d["subject"] == "abstract_algebra"]
    doc = rows(eval_data / "mmlu/test.jsonl")[0]

    def q(d: dict) -> str:
        a, b, c, e = d["choices"]
        return f"{d['question'].strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {e}\nAnswer:"

    expected = (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        + "".join(f"{q(d)} {'ABCD'[d['answer']]}\n\n" for d in dev[:5])
        + q(doc)
    )
    items = Mmlu().build(eval_data, Settings(num_fewshot=5, limit=2))
    assert len(items) == 2 * MMLU_SUBJECTS  # --limit counts per subject
    assert items[0].requests[0][0] == expected
    assert [x for _, x in items[0].requests] == [" A", " B", " C", " D"]
    assert items[0].subtask == "abstract_algebra"


def test_prompt_equals_lm_eval_yaml(eval_data: Path) -> None:
    template = yaml_config("mmlu/default/_default_template_yaml")
    subject = yaml_config("mmlu/default/mmlu_high_school_physics.yaml")
    dev = [d for d in rows(eval_data / "mmlu/dev.jsonl") if d["subject"] == "high_school_physics"]
    test = [d for d in rows(eval_data / "mmlu/test.jsonl") if d["subject"] == "high_school_physics"]
    ref = sampler(dev, first_n=True)
    shots = [(render(template["doc_to_text"], d), template["doc_to_choice"][d["answer"]]) for d in ref.sample(n=5)]
    expected = plain_context(shots, render(template["doc_to_text"], test[0]), subject["description"])
    item = next(i for i in Mmlu().build(eval_data, Settings(num_fewshot=5, limit=1)) if i.subtask == "high_school_physics")
    assert item.requests[0][0] == expected


def test_average_is_unweighted_over_subjects() -> None:
    scored = [Scored(0, "a0", "a", {"acc": 1.0}), Scored(1, "a1", "a", {"acc": 1.0})]
    scored += [Scored(2 + i, f"b{i}", "b", {"acc": float(i == 0)}) for i in range(4)]
    results = {(r.metric, r.subtask): r for r in Mmlu().aggregate(scored)}
    assert results[("acc", "a")].value == 1.0
    assert results[("acc", "b")].value == 0.25
    assert results[("acc", "")].value == pytest.approx((1.0 + 0.25) / 2)  # leaderboard
    assert results[("acc_weighted", "")].value == pytest.approx(3 / 6)  # lm-eval group
    se_b = results[("acc", "b")].stderr
    assert se_b == pytest.approx(0.25)  # stddev 0.5 / sqrt(4)
    assert results[("acc", "")].stderr == pytest.approx(((0.0**2 + 0.25**2) ** 0.5) / 2)
