"""Which two models battle next. Like Chatbot Arena's sampler, it prefers pairs whose
outcome is least known: a pair's weight falls with the battles it already had and doubles
while the two models' intervals overlap (or one has no interval yet). Which model is "A"
is a coin flip, so position says nothing."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from hearth.arena.ratings import Leaderboard, Outcome
from hearth.errors import UserInputError


def pair_weights(
    models: Sequence[str], outcomes: Sequence[Outcome], board: Leaderboard | None = None
) -> dict[tuple[str, str], float]:
    """Weight of each unordered pair (names sorted)."""
    counts: Counter[tuple[str, str]] = Counter()
    for o in outcomes:
        counts[(min(o.model_a, o.model_b), max(o.model_a, o.model_b))] += 1
    intervals = {
        r.model: (r.ci_low, r.ci_high)
        for r in (board.ratings if board else ())
        if r.ci_low is not None
    }
    names = sorted(set(models))
    weights = {}
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            w = 1.0 / (1.0 + counts[(x, y)])
            ix, iy = intervals.get(x), intervals.get(y)
            if ix is None or iy is None or (ix[0] <= iy[1] and iy[0] <= ix[1]):  # type: ignore[operator]
                w *= 2.0
            weights[(x, y)] = w
    return weights


def draw_pair(
    models: Sequence[str],
    outcomes: Sequence[Outcome],
    board: Leaderboard | None = None,
    rng: random.Random | None = None,
) -> tuple[str, str]:
    """(model A, model B) for the next battle."""
    if len(set(models)) < 2:
        raise UserInputError(
            "a battle needs at least two models; `hearth pull` or `hearth create` another one "
            f"(have: {', '.join(sorted(set(models))) or 'none'})"
        )
    rng = rng or random.Random()
    weights = pair_weights(models, outcomes, board)
    pairs = list(weights)
    x, y = rng.choices(pairs, weights=[weights[p] for p in pairs])[0]
    return (x, y) if rng.random() < 0.5 else (y, x)
