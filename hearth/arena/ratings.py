"""The arena leaderboard as Chatbot Arena computes it (FastChat `elo_analysis.py` /
`rating_systems.py`): Bradley–Terry ratings by maximum likelihood (scale 400, base 10, 1000
for the average model), 95% intervals from the 2.5% / 97.5% quantiles of a seeded bootstrap,
rank = 1 + the number of models whose lower bound is above this model's upper bound, and
optionally style control (answer length and markdown as covariates).

Outcomes: "model_a", "model_b", "tie", "tie (bothbad)" (FastChat's spellings). A both-bad
vote is a tie by default; with `both_bad="loss"` each model instead loses one game to a
hidden "both bad" competitor that is rated with the others but never listed.

Knows nothing of storage or HTTP: battles come in as `Outcome`s."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hearth.arena import bradley_terry as bt
from hearth.arena.style import STYLE_FEATURES, style_matrix

WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")
BOTH_BAD_MODES = ("tie", "loss")
_BOTH_BAD = "(both bad)"  # the hidden competitor of --both-bad loss


@dataclass(frozen=True)
class Outcome:
    """One rated battle. `style`: FastChat's conv_metadata (token counts and markdown
    counts per side), needed only for style control."""

    model_a: str
    model_b: str
    winner: str
    style: Mapping[str, object] | None = None

    def __post_init__(self) -> None:
        if self.winner not in WINNERS:
            raise ValueError(f"winner must be one of {', '.join(WINNERS)}, got {self.winner!r}")
        if self.model_a == self.model_b:
            raise ValueError(f"a battle needs two different models, got {self.model_a!r} twice")


@dataclass(frozen=True)
class RatingConfig:
    scale: float = 400.0
    base: float = 10.0
    init_rating: float = 1000.0
    num_rounds: int = 100
    seed: int = 0
    both_bad: str = "tie"
    style_control: bool = False
    # fewer battles than this, or a model that won (or lost) every one, gets no interval:
    # its bootstrap spread would be an artefact, not a measurement
    min_battles: int = 10

    def __post_init__(self) -> None:
        if self.both_bad not in BOTH_BAD_MODES:
            raise ValueError(f"both_bad must be 'tie' or 'loss', got {self.both_bad!r}")
        if self.num_rounds < 1:
            raise ValueError(f"num_rounds must be >= 1, got {self.num_rounds}")
        if self.style_control and self.both_bad == "loss":
            raise ValueError("style_control rates both-bad votes as ties; use both_bad='tie'")
        if self.scale <= 0 or self.base <= 1:
            raise ValueError("scale must be > 0 and base > 1")


@dataclass(frozen=True)
class Rating:
    model: str
    rating: float
    ci_low: float | None  # None: too few battles for an interval (see `note`)
    ci_high: float | None
    rank: int | None
    battles: int
    wins: int
    losses: int
    ties: int
    both_bad: int
    note: str = ""

    @property
    def win_rate(self) -> float | None:
        """Wins / (wins + losses): ties left out, as FastChat's win-fraction tables do."""
        decided = self.wins + self.losses
        return self.wins / decided if decided else None

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "rating": round(self.rating, 2),
            "ci_low": None if self.ci_low is None else round(self.ci_low, 2),
            "ci_high": None if self.ci_high is None else round(self.ci_high, 2),
            "rank": self.rank,
            "battles": self.battles,
            "wins": self.wins,
            "losses": self.losses,
            "ties": self.ties,
            "both_bad": self.both_bad,
            "win_rate": None if self.win_rate is None else round(self.win_rate, 4),
            "note": self.note,
        }


@dataclass(frozen=True)
class Leaderboard:
    ratings: tuple[Rating, ...]
    num_battles: int
    config: RatingConfig
    style_coefficients: dict[str, float] = field(default_factory=dict)


# -- the fits --------------------------------------------------------------------------------
def model_order(outcomes: Sequence[Outcome]) -> list[str]:
    """Models in order of first appearance over all model_a, then all model_b (the order
    pandas.factorize gives FastChat, which fixes the bootstrap's row order)."""
    seen: dict[str, None] = {}
    for o in outcomes:
        seen.setdefault(o.model_a)
    for o in outcomes:
        seen.setdefault(o.model_b)
    return list(seen)


def _schedule(outcomes: Sequence[Outcome], both_bad: str) -> tuple[list[str], np.ndarray]:
    """(models, rows of [a index, b index, outcome code]) with codes 2 = a won, 1 = tie,
    0 = b won. Under --both-bad loss a both-bad battle becomes two losses to _BOTH_BAD."""
    models = model_order(outcomes)
    if both_bad == "loss" and any(o.winner == "tie (bothbad)" for o in outcomes):
        models.append(_BOTH_BAD)
    index = {m: i for i, m in enumerate(models)}
    code = {"model_a": 2, "model_b": 0, "tie": 1, "tie (bothbad)": 1}
    rows: list[tuple[int, int, int]] = []
    for o in outcomes:
        a, b = index[o.model_a], index[o.model_b]
        if o.winner == "tie (bothbad)" and both_bad == "loss":
            rows += [(a, index[_BOTH_BAD], 0), (b, index[_BOTH_BAD], 0)]
        else:
            rows.append((a, b, code[o.winner]))
    return models, np.array(rows, dtype=np.int64).reshape(-1, 3)


def _distinct(schedule: np.ndarray) -> bt.Rows:
    unique, counts = np.unique(schedule, axis=0, return_counts=True)
    return bt.Rows(unique[:, :2], unique[:, 2] / 2.0, counts.astype(np.float64))


def _bt_ratings(
    schedule: np.ndarray, num_models: int, cfg: RatingConfig, anchor: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """(point ratings (M,), bootstrap ratings (rounds, M)) on the natural scale. `anchor`:
    the hidden both-bad competitor, a bar fixed at the models' average (it never loses, so
    a free rating for it would run off to infinity and make its wins uninformative)."""
    rows = _distinct(schedule)
    alpha = float(np.log(cfg.base))
    point = bt.fit(rows, num_models, alpha, anchor)
    # resampling battles with replacement = a multinomial draw of how often each distinct
    # row occurs; the same seed and row order give FastChat's samples
    rng = np.random.default_rng(cfg.seed)
    n = len(schedule)
    draws = rng.multinomial(n, rows.weights / rows.weights.sum(), size=cfg.num_rounds)
    boot = np.array(
        [
            bt.fit(bt.Rows(rows.matchups, rows.outcomes, d / n), num_models, alpha, anchor)
            for d in draws
        ]
    )
    return point, boot


def _style_ratings(
    outcomes: Sequence[Outcome], schedule: np.ndarray, num_models: int, cfg: RatingConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(point ratings, bootstrap ratings, point coefficients) with style control."""
    features = style_matrix([o.style or {} for o in outcomes])
    matchups, y = schedule[:, :2], schedule[:, 2] / 2.0
    alpha = float(np.log(cfg.base))
    point, coef = bt.fit_contextual(matchups, features, y, num_models, alpha)
    rng = np.random.default_rng(cfg.seed)
    idx = rng.integers(0, len(y), size=(cfg.num_rounds, len(y)))
    boot = np.array(
        [bt.fit_contextual(matchups[i], features[i], y[i], num_models, alpha)[0] for i in idx]
    )
    return point, boot, coef


def leaderboard(outcomes: Sequence[Outcome], cfg: RatingConfig | None = None) -> Leaderboard:
    """Rate the battles (only anonymous, untainted ones should be passed in)."""
    cfg = cfg or RatingConfig()
    if not outcomes:
        return Leaderboard((), 0, cfg)
    models, schedule = _schedule(outcomes, cfg.both_bad)
    coefs: dict[str, float] = {}
    if cfg.style_control:
        point, boot, coef = _style_ratings(outcomes, schedule, len(models), cfg)
        coefs = {name: float(c) for name, c in zip(STYLE_FEATURES, coef, strict=True)}
    else:
        bar = len(models) - 1 if models[-1] == _BOTH_BAD else None
        point, boot = _bt_ratings(schedule, len(models), cfg, bar)
    point = point * cfg.scale + cfg.init_rating
    boot = boot * cfg.scale + cfg.init_rating
    low, high = np.quantile(boot, 0.025, axis=0), np.quantile(boot, 0.975, axis=0)
    return Leaderboard(
        _assemble(outcomes, models, point, low, high, cfg), len(outcomes), cfg, coefs
    )


# -- the table ---------------------------------------------------------------------------------
def _tallies(outcomes: Sequence[Outcome]) -> dict[str, Counter[str]]:
    tally: dict[str, Counter[str]] = {}
    for o in outcomes:
        a, b = tally.setdefault(o.model_a, Counter()), tally.setdefault(o.model_b, Counter())
        a["battles"] += 1
        b["battles"] += 1
        if o.winner == "model_a":
            a["wins"] += 1
            b["losses"] += 1
        elif o.winner == "model_b":
            b["wins"] += 1
            a["losses"] += 1
        else:
            key = "ties" if o.winner == "tie" else "both_bad"
            a[key] += 1
            b[key] += 1
    return tally


def _no_interval_reason(t: Counter[str], cfg: RatingConfig) -> str:
    if t["battles"] < cfg.min_battles:
        return f"too few battles for an interval ({t['battles']} < {cfg.min_battles})"
    if t["losses"] == 0 and t["ties"] + t["both_bad"] == 0:
        return "won every battle: no interval until it loses or ties one"
    if t["wins"] == 0 and t["ties"] + t["both_bad"] == 0:
        return "lost every battle: no interval until it wins or ties one"
    return ""


def _assemble(
    outcomes: Sequence[Outcome],
    models: list[str],
    point: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    cfg: RatingConfig,
) -> tuple[Rating, ...]:
    tally = _tallies(outcomes)
    shown = [i for i, m in enumerate(models) if m != _BOTH_BAD]
    notes = {i: _no_interval_reason(tally[models[i]], cfg) for i in shown}
    ranked = [i for i in shown if not notes[i]]
    out = []
    for i in shown:
        t = tally[models[i]]
        has_ci = not notes[i]
        rank = 1 + sum(1 for j in ranked if j != i and low[j] > high[i]) if has_ci else None
        out.append(
            Rating(
                model=models[i],
                rating=float(point[i]),
                ci_low=float(low[i]) if has_ci else None,
                ci_high=float(high[i]) if has_ci else None,
                rank=rank,
                battles=t["battles"],
                wins=t["wins"],
                losses=t["losses"],
                ties=t["ties"],
                both_bad=t["both_bad"],
                note=notes[i],
            )
        )
    out.sort(key=lambda r: -r.rating)
    return tuple(out)
