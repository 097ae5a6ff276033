"""The local judge (FastChat's MT-Bench `llm_judge`): every model answers every question
(both turns, the second after its own first answer), then a judge model grades them:

- single-answer grading: a 1-10 score per answer and turn (`single-v1`, or
  `single-math-v1` with the reference answer for math / reasoning / coding);
- pairwise: each pair of models judged twice per question and turn, the answers shown in
  both orders; the two verdicts combine (inconsistent ones become a tie) into a battle
  stored with `judge` set, which the arena's ratings count like any other.

A malformed judgment is counted and reported, never guessed. The judge is anything that
answers a system + user message (`JudgeModel`): a store model through the engine, or an
OpenAI-compatible server. Small local models are weak judges; a strong one behind
`--judge-url` gives numbers worth reading."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hearth.arena.battles import BattleStore, Message, NewBattle
from hearth.arena.judge_scores import JudgeScore, ScoreStore
from hearth.arena.verdicts import combine_swapped, parse_pair, parse_rating, prompt_for
from hearth.errors import UserInputError


class JudgeModel(Protocol):
    name: str

    def judge(self, system: str, user: str) -> str: ...


class Answerer(Protocol):
    def answer(self, conversations: list[list[Message]]) -> list[str]: ...


@dataclass(frozen=True)
class Question:
    question_id: str
    category: str
    turns: tuple[str, ...]
    reference: tuple[str, ...] = ()


def load_questions(
    path: Path, references: Path | None = None, limit: int | None = None
) -> list[Question]:
    """MT-Bench questions (JSONL: question_id, category, turns), with reference answers
    (FastChat's `reference_answer/*.jsonl`: choices[0].turns) where given."""
    refs: dict[str, tuple[str, ...]] = {}
    for number, row in read_jsonl(references) if references else []:
        try:
            refs[str(row["question_id"])] = tuple(row["choices"][0]["turns"])
        except (KeyError, IndexError, TypeError) as exc:
            raise UserInputError(f"{references} line {number}: not a reference answer") from exc
    out = []
    for number, row in read_jsonl(path):
        turns = row.get("turns")
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise UserInputError(f"{path} line {number}: `turns` must be a list of strings")
        qid = str(row.get("question_id", number))
        out.append(Question(qid, str(row.get("category", "")), tuple(turns), refs.get(qid, ())))
    return out[:limit] if limit else out


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-empty line; UserInputError names the file and
    line of one that is not a JSON object."""
    if not path.is_file():
        raise UserInputError(f"no such file: {path}")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"{path} line {number}: not JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise UserInputError(f"{path} line {number}: expected a JSON object")
        rows.append((number, row))
    return rows


def collect_answers(answerer: Answerer, questions: Sequence[Question]) -> list[list[str]]:
    """Each question's answers, turn by turn; later turns see the model's earlier answers."""
    conversations: list[list[Message]] = [[] for _ in questions]
    answers: list[list[str]] = [[] for _ in questions]
    for turn in range(max(len(q.turns) for q in questions)):
        todo = [i for i, q in enumerate(questions) if turn < len(q.turns)]
        for i in todo:
            conversations[i].append({"role": "user", "content": questions[i].turns[turn]})
        for i, text in zip(todo, answerer.answer([conversations[i] for i in todo]), strict=True):
            conversations[i].append({"role": "assistant", "content": text})
            answers[i].append(text)
    return answers


@dataclass
class JudgeReport:
    judge: str
    scores: dict[str, list[float]] = field(default_factory=dict)  # model -> scores
    malformed_single: int = 0
    num_single: int = 0
    battles: int = 0
    inconsistent: int = 0
    malformed_pairs: int = 0
    num_pairs: int = 0
    malformed_examples: list[str] = field(default_factory=list)

    def mean_scores(self) -> dict[str, float | None]:
        return {m: (sum(s) / len(s) if s else None) for m, s in self.scores.items()}

    def as_dict(self) -> dict[str, Any]:
        return {
            "judge": self.judge,
            "mean_score": self.mean_scores(),
            "num_scores": {m: len(s) for m, s in self.scores.items()},
            "single": {"judged": self.num_single, "malformed": self.malformed_single},
            "pairwise": {
                "judged": self.num_pairs,
                "battles": self.battles,
                "inconsistent_as_tie": self.inconsistent,
                "malformed": self.malformed_pairs,
            },
        }


def _single_fields(q: Question, answers: list[str], turn: int) -> dict[str, str]:
    fields = {"question": q.turns[0], "answer": answers[0]}
    if turn == 1:
        fields = {"question_1": q.turns[0], "question_2": q.turns[1],
                  "answer_1": answers[0], "answer_2": answers[1]}  # fmt: skip
    for i, ref in enumerate(q.reference[:2], start=1):
        fields[f"ref_answer_{i}"] = ref
    return fields


def _pair_fields(q: Question, x: list[str], y: list[str], turn: int) -> dict[str, str]:
    fields = {"question": q.turns[0], "answer_a": x[0], "answer_b": y[0]}
    if turn == 1:
        fields = {"question_1": q.turns[0], "question_2": q.turns[1], "answer_a_1": x[0],
                  "answer_b_1": y[0], "answer_a_2": x[1], "answer_b_2": y[1]}  # fmt: skip
    for i, ref in enumerate(q.reference[:2], start=1):
        fields[f"ref_answer_{i}"] = ref
    return fields


def _conversation(q: Question, answers: list[str], turns: int) -> list[Message]:
    conv: list[Message] = []
    for t in range(turns):
        conv += [
            {"role": "user", "content": q.turns[t]},
            {"role": "assistant", "content": answers[t]},
        ]
    return conv


@dataclass
class JudgeRun:
    judge: JudgeModel
    battles: BattleStore
    scores: ScoreStore
    progress: Callable[[str], None] = lambda _msg: None

    def _ask(
        self, report: JudgeReport, kind: str, q: Question, turn: int, fields: dict[str, str]
    ) -> str:
        prompt = prompt_for(kind, q.category, turn == 1, bool(q.reference))
        return self.judge.judge(prompt.system_prompt, prompt.render(**fields))

    def single(
        self,
        report: JudgeReport,
        model: str,
        questions: Sequence[Question],
        answers: list[list[str]],
    ) -> None:
        report.scores.setdefault(model, [])
        for q, ans in zip(questions, answers, strict=True):
            for turn in range(min(len(q.turns), 2)):
                text = self._ask(report, "single", q, turn, _single_fields(q, ans, turn))
                score = parse_rating(text)
                report.num_single += 1
                if score is None:
                    report.malformed_single += 1
                    report.malformed_examples.append(text[-200:])
                else:
                    report.scores[model].append(score)
                self.scores.add(
                    JudgeScore(model, q.question_id, turn + 1, self.judge.name, score, text)
                )
                self.progress(f"{model} q{q.question_id} turn {turn + 1}: {score}")

    def pairwise(self, report: JudgeReport, m1: str, m2: str, questions: Sequence[Question],
                 ans1: list[list[str]], ans2: list[list[str]]) -> None:  # fmt: skip
        new = []
        for q, x, y in zip(questions, ans1, ans2, strict=True):
            for turn in range(min(len(q.turns), 2)):
                first = parse_pair(
                    self._ask(report, "pairwise", q, turn, _pair_fields(q, x, y, turn))
                )
                second = parse_pair(
                    self._ask(report, "pairwise", q, turn, _pair_fields(q, y, x, turn))
                )
                report.num_pairs += 1
                verdict = combine_swapped(first, second)
                if verdict is None:
                    report.malformed_pairs += 1
                    continue
                if verdict == "tie" and not first == second == "tie":
                    report.inconsistent += 1  # the verdict followed the position
                winner = {"model_1": "model_a", "model_2": "model_b", "tie": "tie"}[verdict]
                new.append(
                    NewBattle(m1, m2, winner, _conversation(q, x, turn + 1), _conversation(q, y, turn + 1),
                              source="judge", judge=self.judge.name, question_id=q.question_id)
                )  # fmt: skip
                self.progress(f"{m1} vs {m2} q{q.question_id} turn {turn + 1}: {verdict}")
        report.battles += self.battles.add_many(new)


def run_judge(
    run: JudgeRun,
    answerers: dict[str, Answerer],
    questions: Sequence[Question],
    mode: str = "both",
) -> JudgeReport:
    """Answer, grade (single and / or pairwise) and store. `answerers`: model name -> its
    engine."""
    if mode not in ("single", "pairwise", "both"):
        raise UserInputError(f"--mode must be single, pairwise or both, got '{mode}'")
    if mode != "single" and len(answerers) < 2:
        raise UserInputError("pairwise judging needs at least two models (--models A B ...)")
    if not questions:
        raise UserInputError("no questions to judge")
    answers = {}
    for name, answerer in answerers.items():
        run.progress(f"answering with {name}")
        answers[name] = collect_answers(answerer, questions)
    report = JudgeReport(run.judge.name)
    if mode in ("single", "both"):
        for name in answerers:
            run.single(report, name, questions, answers[name])
    if mode in ("pairwise", "both"):
        for m1, m2 in itertools.combinations(answerers, 2):
            run.pairwise(report, m1, m2, questions, answers[m1], answers[m2])
    return report
