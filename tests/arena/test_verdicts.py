"""Judge verdict parsing: every form of FastChat's prompts (single "[[rating]]", pairwise
"[[A]]/[[B]]/[[C]]", arena-hard's five levels), malformed output recognised as such, and
the position swap applied."""

from __future__ import annotations

import pytest

from hearth.arena.verdicts import (
    combine_swapped,
    judge_prompts,
    parse_pair,
    parse_rating,
    prompt_for,
)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("The answer is fine.\nRating: [[7]]", 7.0),
        ("Rating: [[ 8.5 ]]", 8.5),
        ("Rating: [10]", 10.0),  # FastChat's backup form
        ("Rating: [[1]]", 1.0),
        ("Rating: [[7]] ... so again [[7]]", 7.0),  # repeated, not ambiguous
        ("no rating here", None),
        ("Rating: [[7]] or maybe [[8]]", None),  # ambiguous
        ("Rating: [[11]]", None),  # out of range
        ("Rating: [[0]]", None),
        ("see [1] and [2]", None),  # two citations are not a rating
        ("Rating: [[seven]]", None),
        ("", None),
    ],
)
def test_parse_rating(text: str, want: float | None) -> None:
    assert parse_rating(text) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Assistant A is more helpful. [[A]]", "A"),
        ("[[B]]", "B"),
        ("Both are equal: [[C]]", "tie"),
        ("My final verdict is [[A>>B]]", "A"),
        ("[[A>B]]", "A"),
        ("[[A=B]]", "tie"),
        ("[[B>A]]", "B"),
        ("[[B>>A]]", "B"),
        ("[[A]] ... final: [[A]]", "A"),
        ("[[A]] no wait [[B]]", None),  # FastChat would take A
        ("A is better", None),
        ("[A]", None),
        ("[[D]]", None),
    ],
)
def test_parse_pair(text: str, want: str | None) -> None:
    assert parse_pair(text) == want


def test_swapped_positions() -> None:
    # first order shows model_1 as A; the second shows model_2 as A
    assert combine_swapped("A", "B") == "model_1"
    assert combine_swapped("B", "A") == "model_2"
    assert combine_swapped("A", "A") == "tie"  # position bias: inconsistent -> tie
    assert combine_swapped("tie", "tie") == "tie"
    assert combine_swapped("A", "tie") == "tie"
    assert combine_swapped("A", None) is None
    assert combine_swapped(None, "B") is None


def test_prompts_are_fastchats() -> None:
    prompts = judge_prompts()
    assert set(prompts) == {
        "pair-v2", "pair-v2-multi-turn", "pair-math-v1", "pair-math-v1-multi-turn",
        "single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn",
    }  # fmt: skip
    assert prompt_for("single", "math", False, True).name == "single-math-v1"
    assert prompt_for("single", "math", False, False).name == "single-v1"
    assert prompt_for("pairwise", "writing", True, False).name == "pair-v2-multi-turn"
    text = prompt_for("single", "writing", False, False).render(question="Q?", answer="Ans")
    assert "[Question]\nQ?" in text and '"[[rating]]"' in text
