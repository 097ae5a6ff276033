"""ARC-Challenge prompts equal lm-eval's for the same documents and seed."""

from __future__ import annotations

import json
import random
from pathlib import Path

from lmeval_ref import plain_context, render, render_list, sampler, yaml_config

from hearth.eval.tasks.arc import ArcChallenge
from hearth.eval.tasks.base import Settings


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().split("\n") if line]


def test_item0_prompt_by_documented_format(eval_data: Path) -> None:
    train = rows(eval_data / "arc_challenge/train.jsonl")
    doc = rows(eval_data / "arc_challenge/test.jsonl")[0]
    shots = random.Random(1234).sample(train, 25)
    expected = "".join(
        f"Question: {d['question']}\nAnswer: {d['choices'][d['answer']]}\n\n" for d in shots
    ) + f"Question: {doc['question']}\nAnswer:"
    item = ArcChallenge().build(eval_data, Settings(num_fewshot=25, limit=1))[0]
    assert [c for c, _ in item.requests] == [expected] * 4
    assert [x for _, x in item.requests] == [" " + c for c in doc["choices"]]
    assert item.gold == doc["answer"] == 2


def hf_doc(d: dict) -> dict:
    """The allenai/ai2_arc schema lm-eval's YAML expects."""
    return {
        "question": d["question"],
        "choices": {"text": d["choices"], "label": d["labels"]},
        "answerKey": d["answer_key"],
    }


def test_prompts_equal_lm_eval_yaml_and_sampler(eval_data: Path) -> None:
    config = yaml_config("arc/arc_challenge.yaml")
    train = [hf_doc(d) for d in rows(eval_data / "arc_challenge/train.jsonl")]
    test = [hf_doc(d) for d in rows(eval_data / "arc_challenge/test.jsonl")[:3]]
    ref_sampler = sampler(train)
    items = ArcChallenge().build(eval_data, Settings(num_fewshot=25, limit=3))
    for doc, item in zip(test, items, strict=True):
        shots = []
        for s in ref_sampler.sample(n=25):  # arc: few-shot split != test split
            choices = render_list(config["doc_to_choice"], s)
            shots.append((render(config["doc_to_text"], s), choices[int(render(config["doc_to_target"], s))]))
        expected = plain_context(shots, render(config["doc_to_text"], doc))
        assert item.requests[0][0] == expected
        assert [x for _, x in item.requests] == [" " + c for c in render_list(config["doc_to_choice"], doc)]
        assert item.gold == int(render(config["doc_to_target"], doc))
