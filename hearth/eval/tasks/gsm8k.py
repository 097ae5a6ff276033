"""GSM8K, as lm-eval's `gsm8k` (v3): "Question: <q>\\nAnswer:" with the full worked
answer as the shot target, 5 shots drawn from train, greedy generation until
"Question:", "</s>" or "<|im_end|>" (at most 256 tokens), then exact match of the number
the `strict-match` filter ("#### N") or the `flexible-extract` filter (the last number)
finds, against the reference after "#### ".

The 2023 leaderboard harness (b281b09) stopped at [":", "Question:", "Question"] and
scored only the strict form; the current harness's settings are used so runs agree with
the lm-eval that can be installed today. Knows nothing of models or storage."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hearth.eval import metrics
from hearth.eval.lm import DEFAULT_MAX_GEN_TOKENS, GenerationRequest
from hearth.eval.tasks.base import (
    Doc,
    FewshotSampler,
    Item,
    MetricResult,
    Scored,
    Settings,
    Task,
    fewshot_prefix,
    limited,
    mean_results,
)

STOP = ("Question:", "</s>", "<|im_end|>")


def doc_to_text(doc: Doc) -> str:
    return "Question: " + doc["question"] + "\nAnswer:"


class Gsm8k(Task):
    name = "gsm8k"
    num_fewshot = 5
    primary_metric = "exact_match"
    primary_subtask = "strict-match"
    eval_file = "gsm8k/test.jsonl"
    fewshot_file = "gsm8k/train.jsonl"
    required_fields = ("question", "answer")

    def build(self, data_dir: Path, settings: Settings) -> list[Item]:
        docs, pool = self.load(data_dir)
        sampler = FewshotSampler(pool, settings.seed)
        max_tokens = settings.max_gen_tokens or DEFAULT_MAX_GEN_TOKENS
        items = []
        for i, doc in enumerate(limited(docs, settings.limit)):
            shots = [(doc_to_text(d), d["answer"]) for d in sampler.sample(settings.num_fewshot)]
            context = fewshot_prefix(shots) + doc_to_text(doc)
            items.append(
                Item(
                    index=i,
                    doc_id=str(doc.get("id", i)),
                    generation=GenerationRequest(context, STOP, max_tokens),
                    gold=doc["answer"],
                )
            )
        return items

    def score(self, item: Item, results: Sequence[Any]) -> Scored:
        (text,) = results
        strict = metrics.strict_extract(text)
        flexible = metrics.flexible_extract(text)
        scores = {
            "exact_match,strict-match": metrics.gsm8k_exact_match(strict, item.gold),
            "exact_match,flexible-extract": metrics.gsm8k_exact_match(flexible, item.gold),
        }
        prediction = {"generation": text, "strict-match": strict, "flexible-extract": flexible}
        return Scored(item.index, item.doc_id, "", scores, prediction)

    def aggregate(self, scored: Sequence[Scored]) -> list[MetricResult]:
        out = []
        for r in mean_results(scored):
            metric, _, filt = r.metric.partition(",")
            out.append(MetricResult(metric, r.value, r.stderr, r.num_items, filt))
        return out
