"""MMLU (hendrycks test), as lm-eval's `mmlu` group of 57 subject tasks: a description
naming the subject, the question with its four lettered options, the letter as the
answer; the first 5 dev rows of the same subject as shots (`first_n`); acc.

The Open LLM Leaderboard v1 reported the unweighted mean of the 57 subject accuracies
(`acc`); current lm-eval weights subjects by size, reported here as `acc_weighted`.
`--limit` applies per subject, as in lm-eval. Knows nothing of models or storage."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from hearth.eval import metrics
from hearth.eval.tasks.base import (
    TARGET_DELIMITER,
    Doc,
    FewshotSampler,
    FirstNSampler,
    Item,
    MetricResult,
    MultipleChoiceTask,
    Scored,
    Settings,
    fewshot_prefix,
    limited,
    mean_results,
)

LETTERS = ("A", "B", "C", "D")


class Mmlu(MultipleChoiceTask):
    name = "mmlu"
    num_fewshot = 5
    primary_metric = "acc"
    eval_file = "mmlu/test.jsonl"
    fewshot_file = "mmlu/dev.jsonl"
    required_fields = ("subject", "question", "choices", "answer")
    metric_names = ("acc",)

    def doc_to_text(self, doc: Doc) -> str:
        options = "".join(
            f"{letter}. {choice}\n" for letter, choice in zip(LETTERS, doc["choices"], strict=True)
        )
        return doc["question"].strip() + "\n" + options + "Answer:"

    def doc_to_choices(self, doc: Doc) -> list[str]:
        return list(LETTERS)

    def description(self, doc: Doc) -> str:
        subject = doc["subject"].replace("_", " ")
        return f"The following are multiple choice questions (with answers) about {subject}.\n\n"

    def subtask(self, doc: Doc) -> str:
        return str(doc["subject"])

    def sampler(self, pool: Sequence[Doc], settings: Settings) -> FewshotSampler:
        return FirstNSampler(pool, settings.seed)

    def build(self, data_dir: Path, settings: Settings) -> list[Item]:
        docs, pool = self.load(data_dir)
        by_subject: dict[str, list[Doc]] = defaultdict(list)
        shots_by_subject: dict[str, list[Doc]] = defaultdict(list)
        for doc in docs:
            by_subject[doc["subject"]].append(doc)
        for doc in pool:
            shots_by_subject[doc["subject"]].append(doc)
        items: list[Item] = []
        # lm-eval runs one task per subject, alphabetically; the order only matters for
        # the resume index, which must be stable
        for subject in sorted(by_subject):
            sampler = self.sampler(shots_by_subject[subject], settings)
            for doc in limited(by_subject[subject], settings.limit):
                shots = [self.shot(d) for d in sampler.sample(settings.num_fewshot)]
                context = fewshot_prefix(shots, self.description(doc)) + self.doc_to_text(doc)
                items.append(
                    Item(
                        index=len(items),
                        doc_id=str(doc.get("id", len(items))),
                        requests=tuple((context, TARGET_DELIMITER + c) for c in LETTERS),
                        subtask=subject,
                        gold=int(doc["answer"]),
                        info={"choices": list(LETTERS)},
                    )
                )
        return items

    def aggregate(self, scored: Sequence[Scored]) -> list[MetricResult]:
        by_subject: dict[str, list[Scored]] = defaultdict(list)
        for s in scored:
            by_subject[s.subtask].append(s)
        subjects = [mean_results(by_subject[k], subtask=k)[0] for k in sorted(by_subject)]
        if not subjects:
            return []
        values = [r.value for r in subjects]
        stderrs = [r.stderr for r in subjects]
        sizes = [r.num_items for r in subjects]
        known = all(se is not None for se in stderrs)
        total = sum(sizes)
        macro = MetricResult(
            "acc",
            metrics.mean(values),
            metrics.unweighted_mean_stderr([se or 0.0 for se in stderrs]) if known else None,
            total,
        )
        micro = MetricResult(
            "acc_weighted",
            sum(v * n for v, n in zip(values, sizes, strict=True)) / total,
            metrics.pooled_stderr([se or 0.0 for se in stderrs], sizes)
            if known and total > len(sizes)
            else None,
            total,
        )
        return [macro, micro, *subjects]
