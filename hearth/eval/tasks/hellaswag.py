"""HellaSwag, as lm-eval's `hellaswag`: the context is `preprocess(activity_label + ": "
+ ctx)`, the choices `preprocess(ending)`; 10 shots drawn from train; acc_norm on
validation.

The shared data stores the context already joined (see its README: `ctx_b` is not
capitalised there and the cleaning is close to lm-eval's), so `preprocess` is applied to
that text again; it is idempotent on already-clean text. Knows nothing of models."""

from __future__ import annotations

import re

from hearth.eval.tasks.base import Doc, MultipleChoiceTask


def preprocess(text: str) -> str:
    """lm-eval's HellaSwag cleaning: strip, " [title]" -> ". ", drop bracketed WikiHow
    artifacts, collapse double spaces (once, as lm-eval does)."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


class Hellaswag(MultipleChoiceTask):
    name = "hellaswag"
    num_fewshot = 10
    primary_metric = "acc_norm"
    eval_file = "hellaswag/validation.jsonl"
    fewshot_file = "hellaswag/train_fewshot_pool.jsonl"
    required_fields = ("context", "choices", "answer")
    exclude_eval_doc = True  # hellaswag.yaml names no test split nor few-shot split

    def doc_to_text(self, doc: Doc) -> str:
        return preprocess(doc["context"])

    def doc_to_choices(self, doc: Doc) -> list[str]:
        return [preprocess(c) for c in doc["choices"]]
