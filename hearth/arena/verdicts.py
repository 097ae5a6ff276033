"""Judge prompts and verdicts: FastChat's MT-Bench prompts (`judge_prompts.json`, from
FastChat's `llm_judge/data/judge_prompts.jsonl`, Apache-2.0), the prompt to use for a
question, and the parsing of what the judge wrote.

Parsing is strict: a verdict is read only when the judge gave exactly one (a 1-10
"[[rating]]", or one of "[[A]]" / "[[B]]" / "[[C]]", or arena-hard's five levels
"[[A>>B]]" ... "[[B>>A]]"). Anything else is malformed and counted, never guessed (FastChat
takes the first "[[A]]" even when "[[B]]" follows)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

# FastChat: these categories are graded against a reference answer
NEED_REF_CATEGORIES = ("math", "reasoning", "coding")

_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_RATING_BACKUP = re.compile(r"(?<!\[)\[\s*(\d+(?:\.\d+)?)\s*\](?!\])")
_PAIR = re.compile(r"\[\[\s*(A|B|C|A>>B|A>B|A=B|B=A|B>A|B>>A)\s*\]\]")
_PAIR_MEANING = {"A": "A", "A>>B": "A", "A>B": "A", "B": "B", "B>>A": "B", "B>A": "B",
                 "C": "tie", "A=B": "tie", "B=A": "tie"}  # fmt: skip


@dataclass(frozen=True)
class JudgePrompt:
    name: str
    type: str  # "single" or "pairwise"
    system_prompt: str
    prompt_template: str

    def render(self, **fields: str) -> str:
        return self.prompt_template.format(**fields)


@cache
def judge_prompts() -> dict[str, JudgePrompt]:
    text = resources.files("hearth.arena").joinpath("judge_prompts.json").read_text("utf-8")
    rows: list[dict[str, Any]] = json.loads(text)
    return {
        r["name"]: JudgePrompt(r["name"], r["type"], r["system_prompt"], r["prompt_template"])
        for r in rows
    }


def prompt_for(kind: str, category: str, multi_turn: bool, has_reference: bool) -> JudgePrompt:
    """FastChat's choice: the math prompt (with the reference) for math, reasoning and
    coding when a reference answer exists; pair-v2 / single-v1 otherwise."""
    math = category in NEED_REF_CATEGORIES and has_reference
    if kind == "single":
        name = "single-math-v1" if math else "single-v1"
    else:
        name = "pair-math-v1" if math else "pair-v2"
    return judge_prompts()[name + ("-multi-turn" if multi_turn else "")]


def parse_rating(judgment: str) -> float | None:
    """The 1-10 rating, or None when the judgment gives none, several different ones, or
    one out of range."""
    values = {float(v) for v in _RATING.findall(judgment)}
    if not values:
        values = {float(v) for v in _RATING_BACKUP.findall(judgment)}
    if len(values) != 1:
        return None
    (value,) = values
    return value if 1.0 <= value <= 10.0 else None


def parse_pair(judgment: str) -> str | None:
    """ "A", "B" or "tie" (in the order the answers were shown), or None when the judgment
    has no verdict or verdicts that disagree."""
    meanings = {_PAIR_MEANING[v] for v in _PAIR.findall(judgment)}
    return meanings.pop() if len(meanings) == 1 else None


def combine_swapped(first: str | None, second: str | None) -> str | None:
    """One pairwise verdict from two judgments, the second with the answers swapped:
    "model_1", "model_2" or "tie" (inconsistent verdicts: a tie, as FastChat counts
    them); None when either judgment was malformed."""
    if first is None or second is None:
        return None
    one = {"A": "model_1", "B": "model_2", "tie": "tie"}[first]
    two = {"A": "model_2", "B": "model_1", "tie": "tie"}[second]
    return one if one == two else "tie"
