"""ARC-Challenge (AI2 Reasoning Challenge, hard set), as lm-eval's `arc_challenge`:
"Question: <q>\\nAnswer:" with each choice text as the continuation; shots drawn from
train; the leaderboard reports 25-shot acc_norm on the test split.

Knows nothing of models or storage."""

from __future__ import annotations

from hearth.eval.tasks.base import Doc, MultipleChoiceTask


class ArcChallenge(MultipleChoiceTask):
    name = "arc_challenge"
    num_fewshot = 25
    primary_metric = "acc_norm"
    eval_file = "arc_challenge/test.jsonl"
    fewshot_file = "arc_challenge/train.jsonl"
    required_fields = ("question", "choices", "answer")

    def doc_to_text(self, doc: Doc) -> str:
        return "Question: " + doc["question"] + "\nAnswer:"
