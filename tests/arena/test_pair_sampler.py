"""The pair sampler: pairs with fewer battles, and pairs whose intervals overlap, are drawn
more often; position is a coin flip; fewer than two models is a usage error."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from hearth.arena.pair_sampler import draw_pair, pair_weights
from hearth.arena.ratings import Outcome, RatingConfig, leaderboard
from hearth.errors import UserInputError


def test_few_battles_and_overlap_preferred() -> None:
    seen = [Outcome("a", "b", "model_a")] * 30 + [
        Outcome("a", "c", w) for w in ["model_a", "model_b"] * 5
    ]
    w = pair_weights(["a", "b", "c"], seen)
    assert w[("b", "c")] > w[("a", "c")] > w[("a", "b")]
    rng = random.Random(0)
    draws = Counter(tuple(sorted(draw_pair(["a", "b", "c"], seen, rng=rng))) for _ in range(600))
    assert draws[("b", "c")] > draws[("a", "c")] > draws[("a", "b")]
    firsts = Counter(draw_pair(["a", "b"], [], rng=rng)[0] for _ in range(400))
    assert 150 < firsts["a"] < 250


def test_separated_intervals_weigh_less() -> None:
    strong = [Outcome("x", "y", "model_a")] * 40 + [Outcome("x", "y", "model_b")] * 2
    close = [Outcome("y", "z", w) for w in ["model_a", "model_b"] * 21]
    board = leaderboard(strong + close, RatingConfig(num_rounds=30))
    w = pair_weights(["x", "y", "z"], strong + close, board)
    assert w[("y", "z")] == pytest.approx(2 / 43)  # overlapping: doubled
    assert w[("x", "y")] == pytest.approx(1 / 43)  # x is clearly above y


def test_needs_two_models() -> None:
    with pytest.raises(UserInputError, match="at least two models"):
        draw_pair(["only"], [])
