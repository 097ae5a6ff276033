"""What every task is made of, following lm-evaluation-harness's ConfigurableTask:
documents rendered to prompts (description, few-shot examples joined by "\\n\\n", the
question with `target_delimiter` " " before each answer), the few-shot sampler (one
`random.Random(seed)` per task, drawing `n` shots per document in document order), the
rendered `Item`s the runner sends to a LanguageModel, and per-item scores aggregated as
means with standard errors.

Knows nothing of backends, storage or the CLI."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearth.errors import InvalidParameterError, NotFoundError
from hearth.eval import metrics
from hearth.eval.data import ENV_VAR, read_jsonl
from hearth.eval.lm import GenerationRequest

TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"
DEFAULT_SEED = 1234  # lm-eval's default few-shot seed (DEFAULT_OTHER_SEED)

Doc = dict[str, Any]


@dataclass(frozen=True)
class Item:
    """One document, rendered. `requests` are the (context, continuation) pairs to score
    (one per choice) for log-likelihood tasks; `generation` the request for generative
    ones. `index` is the item's position in the task (the resume key)."""

    index: int
    doc_id: str
    requests: tuple[tuple[str, str], ...] = ()
    generation: GenerationRequest | None = None
    subtask: str = ""
    gold: Any = None
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scored:
    """An item's scores (metric -> value) and what the model answered, for the log."""

    index: int
    doc_id: str
    subtask: str
    scores: Mapping[str, float]
    prediction: Any = None


@dataclass(frozen=True)
class MetricResult:
    """One aggregated number. `subtask` is "" for the task itself (MMLU subjects and the
    GSM8K filters fill it)."""

    metric: str
    value: float
    stderr: float | None
    num_items: int
    subtask: str = ""


@dataclass(frozen=True)
class Settings:
    """How a task is run; the leaderboard's values are each task's defaults."""

    num_fewshot: int
    seed: int = DEFAULT_SEED
    limit: int | None = None
    max_gen_tokens: int | None = None  # None: the task's own limit

    def __post_init__(self) -> None:
        if self.num_fewshot < 0:
            raise ValueError(f"num_fewshot must be >= 0, got {self.num_fewshot}")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit must be > 0, got {self.limit}")
        if self.max_gen_tokens is not None and self.max_gen_tokens < 1:
            raise ValueError(f"max_gen_tokens must be >= 1, got {self.max_gen_tokens}")


def _too_many(n: int, available: int) -> InvalidParameterError:
    return InvalidParameterError(
        "num_fewshot",
        f"num_fewshot: {n} few-shot examples asked but the pool has {available}; ask for fewer",
    )


class FewshotSampler:
    """lm-eval's default ContextSampler: `Random(seed).sample(pool, n)`, one draw per
    document in order, so the shots of document i depend on the draws before it.

    With `eval_doc` (lm-eval passes it when the task's few-shot split equals its test
    split, which for configs that name neither, e.g. HellaSwag and Winogrande, is
    None == None) it draws n + 1, drops copies of the evaluated document and keeps n:
    the extra draw shifts the random stream, so it matters for reproducing the shots."""

    def __init__(self, pool: Sequence[Doc], seed: int) -> None:
        self.pool = list(pool)
        self.rnd = random.Random(seed)

    def sample(self, n: int, eval_doc: Doc | None = None) -> list[Doc]:
        if n == 0:
            return []
        if n + (eval_doc is not None) > len(self.pool):
            raise _too_many(n, len(self.pool))
        if eval_doc is None:
            return self.rnd.sample(self.pool, n)
        shots = [d for d in self.rnd.sample(self.pool, n + 1) if d != eval_doc][:n]
        if len(shots) < n:  # the pool held the evaluated document more than once
            shots = self.rnd.sample([d for d in self.pool if d != eval_doc], n)
        return shots


class FirstNSampler(FewshotSampler):
    """lm-eval's `first_n`: always the first n pool documents (MMLU's canonical shots)."""

    def sample(self, n: int, eval_doc: Doc | None = None) -> list[Doc]:
        pool = [d for d in self.pool if d != eval_doc] if eval_doc is not None else self.pool
        if n > len(pool):
            raise _too_many(n, len(pool))
        return pool[:n]


class Task(ABC):
    """A benchmark. Subclasses give the files, the prompt and the scoring."""

    name: str
    num_fewshot: int  # the Open LLM Leaderboard v1 setting
    primary_metric: str  # the leaderboard column
    primary_subtask: str = ""
    eval_file: str
    fewshot_file: str | None = None
    required_fields: tuple[str, ...] = ()

    def check_files(self, data_dir: Path) -> None:
        """Fail early, naming the file, when the task's data is not there."""
        for rel in (self.eval_file, self.fewshot_file):
            if rel and not (data_dir / rel).is_file():
                raise NotFoundError(
                    f"evaluation data file {data_dir / rel} not found (task {self.name}); "
                    f"`hearth data pull leaderboard` downloads it there (or `--from DIR` "
                    f"copies a folder), or point --data-dir / {ENV_VAR} at the data"
                )

    def load(self, data_dir: Path) -> tuple[list[Doc], list[Doc]]:
        """The evaluation documents and the few-shot pool (empty if the task has none)."""
        docs = read_jsonl(data_dir, self.eval_file, self.required_fields)
        pool = (
            read_jsonl(data_dir, self.fewshot_file, self.required_fields)
            if self.fewshot_file
            else []
        )
        return docs, pool

    @abstractmethod
    def build(self, data_dir: Path, settings: Settings) -> list[Item]:
        """Every item this run scores, in order (the first `limit` documents)."""

    @abstractmethod
    def score(self, item: Item, results: Sequence[Any]) -> Scored:
        """Scores for one item from its results: (loglikelihood, is_greedy) per request,
        or the single generated string."""

    def aggregate(self, scored: Sequence[Scored]) -> list[MetricResult]:
        """Mean of each per-item metric with lm-eval's sample standard error."""
        return mean_results(scored)


def mean_results(scored: Sequence[Scored], subtask: str = "") -> list[MetricResult]:
    if not scored:
        return []
    names = list(scored[0].scores)
    out = []
    for name in names:
        values = [s.scores[name] for s in scored]
        out.append(
            MetricResult(
                name, metrics.mean(values), metrics.mean_stderr(values), len(values), subtask
            )
        )
    return out


def limited(docs: Sequence[Doc], limit: int | None) -> list[Doc]:
    return list(docs[:limit]) if limit is not None else list(docs)


def fewshot_prefix(shots: Sequence[tuple[str, str]], description: str = "") -> str:
    """description + each (question, answer) as question + " " + answer + "\\n\\n"."""
    return description + "".join(q + TARGET_DELIMITER + a + FEWSHOT_DELIMITER for q, a in shots)


class MultipleChoiceTask(Task):
    """One context, one continuation per choice (" " + choice); acc and acc_norm."""

    metric_names: tuple[str, ...] = ("acc", "acc_norm")
    # lm-eval passes the evaluated doc to the sampler when few-shot split == test split
    exclude_eval_doc: bool = False

    @abstractmethod
    def doc_to_text(self, doc: Doc) -> str: ...

    def doc_to_choices(self, doc: Doc) -> list[str]:
        return [str(c) for c in doc["choices"]]

    def doc_to_gold(self, doc: Doc) -> int:
        return int(doc["answer"])

    def description(self, doc: Doc) -> str:
        return ""

    def sampler(self, pool: Sequence[Doc], settings: Settings) -> FewshotSampler:
        return FewshotSampler(pool, settings.seed)

    def shot(self, doc: Doc) -> tuple[str, str]:
        return self.doc_to_text(doc), self.doc_to_choices(doc)[self.doc_to_gold(doc)]

    def subtask(self, doc: Doc) -> str:
        return ""

    def build(self, data_dir: Path, settings: Settings) -> list[Item]:
        docs, pool = self.load(data_dir)
        sampler = self.sampler(pool, settings)
        items = []
        for i, doc in enumerate(limited(docs, settings.limit)):
            drawn = sampler.sample(settings.num_fewshot, doc if self.exclude_eval_doc else None)
            shots = [self.shot(d) for d in drawn]
            context = fewshot_prefix(shots, self.description(doc)) + self.doc_to_text(doc)
            choices = self.doc_to_choices(doc)
            items.append(
                Item(
                    index=i,
                    doc_id=str(doc.get("id", i)),
                    requests=tuple((context, TARGET_DELIMITER + c) for c in choices),
                    subtask=self.subtask(doc),
                    gold=self.doc_to_gold(doc),
                    info={"choices": choices},
                )
            )
        return items

    def score(self, item: Item, results: Sequence[Any]) -> Scored:
        lls = [float(r[0]) for r in results]
        pred = metrics.choose(lls)
        scores = {"acc": 1.0 if pred == item.gold else 0.0}
        if "acc_norm" in self.metric_names:
            pred_norm = metrics.choose_norm(lls, item.info["choices"])
            scores["acc_norm"] = 1.0 if pred_norm == item.gold else 0.0
        return Scored(
            item.index, item.doc_id, item.subtask, scores, {"loglikelihoods": lls, "pred": pred}
        )
