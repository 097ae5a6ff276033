"""HellaSwag prompts: lm-eval's preprocessing, 10 shots drawn with the evaluated doc
passed to the sampler (n + 1 draws), acc_norm by characters."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from lmeval_ref import plain_context, sampler

from hearth.eval.tasks.base import Settings
from hearth.eval.tasks.hellaswag import Hellaswag, preprocess


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().split("\n") if line]


def test_preprocess_matches_lm_eval_rules() -> None:
    assert preprocess(" Foo [title] bar [step] baz  qux ") == "Foo. bar baz qux"


def test_item0_prompt_by_documented_format(eval_data: Path) -> None:
    pool = rows(eval_data / "hellaswag/train_fewshot_pool.jsonl")
    doc = rows(eval_data / "hellaswag/validation.jsonl")[0]
    # the sampler draws n + 1 and drops the evaluated doc (not in the pool): first 10 kept
    shots = random.Random(1234).sample(pool, 11)[:10]
    expected = "".join(
        f"{preprocess(d['context'])} {preprocess(d['choices'][d['answer']])}\n\n" for d in shots
    ) + preprocess(doc["context"])
    item = Hellaswag().build(eval_data, Settings(num_fewshot=10, limit=1))[0]
    assert item.requests[0][0] == expected
    assert expected.endswith("Roof shingle removal: A man is sitting on a roof. he")
    assert [x for _, x in item.requests] == [" " + preprocess(c) for c in doc["choices"]]
    assert item.gold == 3


def test_prompts_equal_lm_eval_preprocess_and_sampler(eval_data: Path) -> None:
    pytest.importorskip("datasets")
    from lm_eval.tasks.hellaswag.utils import preprocess as ref_preprocess

    def processed(d: dict) -> dict:
        return {"query": ref_preprocess(d["context"]), "choices": [ref_preprocess(e) for e in d["choices"]], "gold": d["answer"]}

    pool = [processed(d) for d in rows(eval_data / "hellaswag/train_fewshot_pool.jsonl")]
    docs = [processed(d) for d in rows(eval_data / "hellaswag/validation.jsonl")[:3]]
    ref = sampler(pool)
    items = Hellaswag().build(eval_data, Settings(num_fewshot=10, limit=3))
    for doc, item in zip(docs, items, strict=True):
        shots = [(s["query"], s["choices"][s["gold"]]) for s in ref.sample(n=10, eval_doc=doc)]
        assert item.requests[0][0] == plain_context(shots, doc["query"])
        assert [x for _, x in item.requests] == [" " + c for c in doc["choices"]]
