"""Winogrande partial scoring: two option-filled contexts, one shared continuation."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from lmeval_ref import lm_eval_tasks_dir, plain_context, sampler

from hearth.eval.tasks.base import Settings
from hearth.eval.tasks.winogrande import Winogrande


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().split("\n") if line]


def test_item0_by_documented_format(eval_data: Path) -> None:
    pool = rows(eval_data / "winogrande/train_fewshot_pool.jsonl")
    shots = random.Random(1234).sample(pool, 6)[:5]

    def filled(d: dict, option: str) -> str:
        return d["sentence"][: d["sentence"].index("_")] + option

    def rest(d: dict) -> str:
        return d["sentence"][d["sentence"].index("_") + 1 :].strip()

    prefix = "".join(f"{filled(d, d['option' + str(d['answer'] + 1)])} {rest(d)}\n\n" for d in shots)
    item = Winogrande().build(eval_data, Settings(num_fewshot=5, limit=1))[0]
    assert item.requests == (
        (prefix + "Sarah was a much better surgeon than Maria so Sarah", " always got the easier cases."),
        (prefix + "Sarah was a much better surgeon than Maria so Maria", " always got the easier cases."),
    )
    assert item.gold == 1


def test_prompts_equal_lm_eval_functions(eval_data: Path) -> None:
    lm_eval_tasks_dir()
    from lm_eval.tasks.winogrande import preprocess_winogrande as ref

    def hf(d: dict) -> dict:  # allenai/winogrande schema: answer "1"/"2"
        return {"sentence": d["sentence"], "option1": d["option1"], "option2": d["option2"], "answer": str(d["answer"] + 1)}

    pool = [hf(d) for d in rows(eval_data / "winogrande/train_fewshot_pool.jsonl")]
    docs = [hf(d) for d in rows(eval_data / "winogrande/validation.jsonl")[:3]]
    ref_sampler = sampler(pool)
    items = Winogrande().build(eval_data, Settings(num_fewshot=5, limit=3))
    for doc, item in zip(docs, items, strict=True):
        shots = [(ref.doc_to_choice(s)[ref.doc_to_text(s)], ref.doc_to_target(s)) for s in ref_sampler.sample(n=5, eval_doc=doc)]
        expected = [plain_context(shots, ctx) for ctx in ref.doc_to_choice(doc)]
        assert [c for c, _ in item.requests] == expected
        assert {x for _, x in item.requests} == {" " + ref.doc_to_target(doc)}
        assert item.gold == ref.doc_to_text(doc)


def test_score_picks_the_likelier_context(eval_data: Path) -> None:
    task = Winogrande()
    item = task.build(eval_data, Settings(num_fewshot=0, limit=1))[0]
    assert task.score(item, [(-5.0, False), (-4.0, False)]).scores == {"acc": 1.0}
    assert task.score(item, [(-3.0, False), (-4.0, False)]).scores == {"acc": 0.0}
    with pytest.raises(Exception, match="num_fewshot"):
        task.build(eval_data, Settings(num_fewshot=100, limit=1))  # pool has 100: n + 1 > 100
