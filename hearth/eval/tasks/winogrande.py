"""Winogrande, as lm-eval's `winogrande` (winogrande_xl): partial scoring. The blank is
filled with each option to make two contexts (`sentence[:blank] + option`); the same
continuation (" " + the rest of the sentence) is scored under both; acc. Shots are the
option-filled context of the right option plus the rest of the sentence, drawn from train.

Knows nothing of models or storage."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hearth.eval import metrics
from hearth.eval.tasks.base import (
    TARGET_DELIMITER,
    Doc,
    FewshotSampler,
    Item,
    Scored,
    Settings,
    Task,
    fewshot_prefix,
    limited,
)


def partial_contexts(doc: Doc) -> list[str]:
    blank = doc["sentence"].index("_")
    return [doc["sentence"][:blank] + opt for opt in (doc["option1"], doc["option2"])]


def partial_target(doc: Doc) -> str:
    blank = doc["sentence"].index("_") + 1
    return str(doc["sentence"][blank:].strip())


class Winogrande(Task):
    name = "winogrande"
    num_fewshot = 5
    primary_metric = "acc"
    eval_file = "winogrande/validation.jsonl"
    fewshot_file = "winogrande/train_fewshot_pool.jsonl"
    required_fields = ("sentence", "option1", "option2", "answer")

    def build(self, data_dir: Path, settings: Settings) -> list[Item]:
        docs, pool = self.load(data_dir)
        sampler = FewshotSampler(pool, settings.seed)
        items = []
        for i, doc in enumerate(limited(docs, settings.limit)):
            if "_" not in doc["sentence"]:
                raise ValueError(f"winogrande item {doc.get('id', i)} has no blank '_'")
            # default.yaml names no test split: lm-eval passes the doc to the sampler
            drawn = sampler.sample(settings.num_fewshot, eval_doc=doc)
            shots = [(partial_contexts(d)[int(d["answer"])], partial_target(d)) for d in drawn]
            prefix = fewshot_prefix(shots)
            target = TARGET_DELIMITER + partial_target(doc)
            items.append(
                Item(
                    index=i,
                    doc_id=str(doc.get("id", i)),
                    requests=tuple((prefix + ctx, target) for ctx in partial_contexts(doc)),
                    gold=int(doc["answer"]),
                )
            )
        return items

    def score(self, item: Item, results: Sequence[Any]) -> Scored:
        lls = [float(r[0]) for r in results]
        pred = metrics.choose(lls)
        acc = 1.0 if pred == item.gold else 0.0
        return Scored(
            item.index, item.doc_id, "", {"acc": acc}, {"loglikelihoods": lls, "pred": pred}
        )
