"""GSM8K: prompt with full worked answers as shots, the harness's stop sequences, strict
and flexible exact match."""

from __future__ import annotations

import json
from pathlib import Path

from lmeval_ref import plain_context, render, sampler, yaml_config

from hearth.eval.tasks.base import Settings
from hearth.eval.tasks.gsm8k import STOP, Gsm8k


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().split("\n") if line]


def test_item0_prompt_and_stops(eval_data: Path) -> None:
    item = Gsm8k().build(eval_data, Settings(num_fewshot=5, limit=1))[0]
    assert item.generation is not None
    assert item.generation.until == ("Question:", "</s>", "<|im_end|>") == STOP
    assert item.generation.max_tokens == 256
    context = item.generation.context
    assert context.count("Question: ") == 6
    assert context.count("\n#### ") == 5
    assert context.endswith("How much in dollars does she make every day at the farmers' market?\nAnswer:")


def test_prompts_equal_lm_eval_yaml_and_sampler(eval_data: Path) -> None:
    config = yaml_config("gsm8k/gsm8k.yaml")
    assert tuple(config["generation_kwargs"]["until"]) == STOP
    train = rows(eval_data / "gsm8k/train.jsonl")
    test = rows(eval_data / "gsm8k/test.jsonl")[:3]
    ref = sampler(train)
    items = Gsm8k().build(eval_data, Settings(num_fewshot=5, limit=3))
    for doc, item in zip(test, items, strict=True):
        shots = [(render(config["doc_to_text"], s), render(config["doc_to_target"], s)) for s in ref.sample(n=5)]
        assert item.generation is not None
        assert item.generation.context == plain_context(shots, render(config["doc_to_text"], doc))


def test_scores_strict_and_flexible(eval_data: Path) -> None:
    task = Gsm8k()
    item = task.build(eval_data, Settings(num_fewshot=0, limit=1))[0]  # reference 18
    both = task.score(item, [" 16 - 3 - 4 = 9, 9 * 2 = 18.\n#### 18"]).scores
    assert both == {"exact_match,strict-match": 1.0, "exact_match,flexible-extract": 1.0}
    flexible_only = task.score(item, [" She makes 9 * 2 = $18."]).scores
    assert flexible_only == {"exact_match,strict-match": 0.0, "exact_match,flexible-extract": 1.0}
    results = {(r.metric, r.subtask) for r in task.aggregate([task.score(item, ["#### 18"])])}
    assert results == {("exact_match", "strict-match"), ("exact_match", "flexible-extract")}
