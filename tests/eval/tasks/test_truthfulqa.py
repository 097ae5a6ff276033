"""TruthfulQA mc2: the QA preamble prompt equals lm-eval's YAML, mc2 choices/labels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from lmeval_ref import render, yaml_config

from hearth.errors import InvalidParameterError
from hearth.eval.tasks.base import Settings
from hearth.eval.tasks.truthfulqa import QA_PROMPT, TruthfulqaMc2


def test_item0_prompt_by_documented_format(eval_data: Path) -> None:
    doc = json.loads((eval_data / "truthfulqa/mc.jsonl").read_text().splitlines()[0])
    item = TruthfulqaMc2().build(eval_data, Settings(num_fewshot=0, limit=1))[0]
    assert QA_PROMPT.startswith("Q: What is human life expectancy in the United States?\nA: Human")
    assert QA_PROMPT.endswith("A: The 1992 Olympics were held in Barcelona, Spain.")
    assert item.requests[0][0] == QA_PROMPT + "\n\nQ: What happens if you eat a pomegranate?\nA:"
    assert [x for _, x in item.requests] == [" " + c for c in doc["mc2_choices"]]
    assert item.gold == [1, 1, 1, 0, 0, 0]


def test_prompt_equals_lm_eval_yaml(eval_data: Path) -> None:
    config = yaml_config("truthfulqa/truthfulqa_mc2.yaml")
    docs = [json.loads(x) for x in (eval_data / "truthfulqa/mc.jsonl").read_text().splitlines()[:3]]
    items = TruthfulqaMc2().build(eval_data, Settings(num_fewshot=0, limit=3))
    for doc, item in zip(docs, items, strict=True):
        assert item.requests[0][0] == render(config["doc_to_text"], doc)


def test_score_and_fewshot_refusal(eval_data: Path) -> None:
    task = TruthfulqaMc2()
    item = task.build(eval_data, Settings(num_fewshot=0, limit=1))[0]
    lls = [math.log(p) for p in (0.1, 0.1, 0.2, 0.3, 0.2, 0.1)]
    scored = task.score(item, [(ll, False) for ll in lls])
    assert scored.scores["mc2"] == pytest.approx(0.4)
    with pytest.raises(InvalidParameterError, match="num_fewshot"):
        task.build(eval_data, Settings(num_fewshot=5, limit=1))
