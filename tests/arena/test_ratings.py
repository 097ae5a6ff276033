"""hearth.arena.ratings against FastChat's method, computed here independently: pandas'
factorize order, distinct (a, b, outcome) rows, a seeded multinomial bootstrap, and each fit
by scikit-learn's unregularised LogisticRegression (the route of FastChat's original
notebook / `fit_mle_elo`); style control by FastChat's duplicated-battle L2 regression."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hearth.arena.ratings import Outcome, RatingConfig, leaderboard
from hearth.arena.style import conv_metadata

pd = pytest.importorskip("pandas")
linear_model = pytest.importorskip("sklearn.linear_model")

STRENGTHS = {
    "alpha": 1150.0,
    "bravo": 1100.0,
    "charlie": 1040.0,
    "delta": 1000.0,
    "echo": 960.0,
    "foxtrot": 850.0,
}


def synthetic(num: int, seed: int, style_bias: float = 0.0) -> list[Outcome]:
    """Battles between models of known strength (Elo points), with ties and both-bad votes.
    `style_bias`: extra logit for the longer answer, so style control has something to find."""
    rng = np.random.default_rng(seed)
    names = list(STRENGTHS)
    out = []
    for _ in range(num):
        a, b = rng.choice(len(names), size=2, replace=False)
        ma, mb = names[a], names[b]
        len_a, len_b = int(rng.integers(20, 400)), int(rng.integers(20, 400))
        logit = math.log(10) * (STRENGTHS[ma] - STRENGTHS[mb]) / 400
        logit += style_bias * (len_a - len_b) / (len_a + len_b + 1)
        u = rng.random()
        if u < 0.12:
            winner = "tie"
        elif u < 0.18:
            winner = "tie (bothbad)"
        else:
            winner = "model_a" if rng.random() < 1 / (1 + math.exp(-logit)) else "model_b"
        text_a = "## Plan\n- one\n- two\n**bold**" if rng.random() < 0.5 else "plain"
        text_b = "1. first\n2. second" if rng.random() < 0.5 else "plain"
        out.append(Outcome(ma, mb, winner, conv_metadata(text_a, text_b, len_a, len_b)))
    return out


def _sk_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, c: float) -> np.ndarray:
    lr = linear_model.LogisticRegression(fit_intercept=False, C=c, tol=1e-12, max_iter=10_000)
    lr.fit(x, y, sample_weight=w)
    return lr.coef_[0]


def fastchat_reference(battles: list[Outcome], rounds: int, seed: int) -> pd.DataFrame:
    df = pd.DataFrame(
        [{"model_a": o.model_a, "model_b": o.model_b, "winner": o.winner} for o in battles]
    )
    n = len(df)
    idx, models = pd.factorize(pd.concat([df["model_a"], df["model_b"]]))
    sched = np.ones((n, 3), dtype=np.int64)
    sched[:, 0], sched[:, 1] = idx[:n], idx[n:]
    sched[(df["winner"] == "model_a").to_numpy(), 2] = 2
    sched[(df["winner"] == "model_b").to_numpy(), 2] = 0
    rows, counts = np.unique(sched, axis=0, return_counts=True)
    p, alpha = len(models), math.log(10)
    x = np.zeros((len(rows), p))
    x[np.arange(len(rows)), rows[:, 0]] = alpha
    x[np.arange(len(rows)), rows[:, 1]] = -alpha
    # a row with outcome o and weight w = a win with weight w*o plus a loss with w*(1-o)
    xx, yy = np.vstack([x, x]), np.r_[np.ones(len(rows)), np.zeros(len(rows))]
    frac = np.r_[rows[:, 2] / 2, 1 - rows[:, 2] / 2]

    def fit(weights: np.ndarray) -> np.ndarray:
        w = np.r_[weights, weights] * frac
        keep = w > 0
        return 400 * _sk_fit(xx[keep], yy[keep], w[keep], math.inf) + 1000

    point = fit(counts.astype(float))
    draws = np.random.default_rng(seed).multinomial(n, counts / counts.sum(), size=rounds)
    boot = np.array([fit(d.astype(float)) for d in draws])
    return _table(list(models), point, boot)


def _table(models: list[str], point: np.ndarray, boot: np.ndarray) -> pd.DataFrame:
    t = pd.DataFrame(
        {
            "rating": point,
            "low": np.quantile(boot, 0.025, axis=0),
            "high": np.quantile(boot, 0.975, axis=0),
        },
        index=models,
    )
    t["rank"] = [1 + int((t["low"].drop(m) > t.loc[m, "high"]).sum()) for m in t.index]
    return t


def _ours(board) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rating": [r.rating for r in board.ratings],
            "low": [r.ci_low for r in board.ratings],
            "high": [r.ci_high for r in board.ratings],
            "rank": [r.rank for r in board.ratings],
        },
        index=[r.model for r in board.ratings],
    )


def _centred(t: pd.DataFrame) -> pd.DataFrame:
    c = t.copy()
    shift = c["rating"].mean()
    for col in ("rating", "low", "high"):
        c[col] = c[col] - shift
    return c


def test_ratings_match_fastchat_reference() -> None:
    battles = synthetic(2500, seed=1)
    board = leaderboard(battles, RatingConfig(num_rounds=100, seed=0))
    ours = _centred(_ours(board))
    ref = _centred(fastchat_reference(battles, rounds=100, seed=0)).loc[ours.index]
    for col in ("rating", "low", "high"):
        assert np.max(np.abs(ours[col] - ref[col])) < 0.5, col
    assert list(ours["rank"]) == list(ref["rank"])
    # the known strengths come back in order, and the strongest is ranked first
    assert [r.model for r in board.ratings] == list(STRENGTHS)
    assert board.ratings[0].rank == 1
    assert board.ratings[-1].rank > 1
    assert abs(np.mean([r.rating for r in board.ratings]) - 1000) < 1e-6


def test_style_control_matches_fastchat_reference() -> None:
    battles = synthetic(1200, seed=2, style_bias=1.5)
    rounds, seed = 20, 3
    board = leaderboard(battles, RatingConfig(num_rounds=rounds, seed=seed, style_control=True))

    # FastChat elo_analysis.construct_style_matrices + fit_mle_elo, computed independently
    from hearth.arena.style import style_matrix

    df = pd.DataFrame(
        [{"model_a": o.model_a, "model_b": o.model_b, "winner": o.winner} for o in battles]
    )
    models = list(pd.concat([df["model_a"], df["model_b"]]).unique())
    col = {m: i for i, m in enumerate(models)}
    feats = style_matrix([o.style for o in battles])
    n, p = len(df), len(models)
    x = np.zeros((n, p + feats.shape[1]))
    x[np.arange(n), [col[m] for m in df["model_a"]]] = math.log(10)
    x[np.arange(n), [col[m] for m in df["model_b"]]] = -math.log(10)
    x[:, p:] = feats
    win = (df["winner"] == "model_a").to_numpy()
    tie = df["winner"].str.startswith("tie").to_numpy()

    def fit(i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xx = np.vstack([x[i], x[i]])  # one battle = two rows; a tie = one win + one loss
        yy = np.r_[(win | tie)[i], win[i]].astype(float)
        coef = _sk_fit(xx, yy, None, 1.0)
        return 400 * coef[:p] + 1000, coef[p:]

    point, coef = fit(np.arange(n))
    idx = np.random.default_rng(seed).integers(0, n, size=(rounds, n))
    boot = np.array([fit(i)[0] for i in idx])
    ref = _centred(_table(models, point, boot))
    ours = _centred(_ours(board)).loc[ref.index]
    for c in ("rating", "low", "high"):
        assert np.max(np.abs(ours[c] - ref[c])) < 0.5, c
    assert list(ours["rank"]) == list(ref["rank"])
    assert board.style_coefficients["length"] == pytest.approx(coef[0], abs=1e-4)
    assert board.style_coefficients["length"] > 0.1  # the length bias was found


def test_both_bad_as_loss_lowers_the_model_that_draws_them() -> None:
    base = [Outcome("x", "y", w) for w in ["model_a", "model_b"] * 20]
    extra = [Outcome("x", "z", "tie (bothbad)") for _ in range(15)]
    extra += [Outcome("y", "z", w) for w in ["model_a", "model_b"] * 8]
    as_tie = {r.model: r for r in leaderboard(base + extra, RatingConfig(num_rounds=10)).ratings}
    as_loss = leaderboard(base + extra, RatingConfig(num_rounds=10, both_bad="loss"))
    loss = {r.model: r for r in as_loss.ratings}
    assert set(loss) == {"x", "y", "z"}  # the hidden competitor is not listed
    assert loss["x"].rating - loss["y"].rating < as_tie["x"].rating - as_tie["y"].rating - 20
    assert loss["x"].both_bad == 15 and loss["x"].ties == 0


def test_too_few_battles_gives_no_interval() -> None:
    battles = [Outcome("a", "b", "model_a")] * 12 + [Outcome("a", "b", "model_b")] * 4
    battles += [Outcome("a", "c", "model_a")] * 3
    board = {r.model: r for r in leaderboard(battles, RatingConfig(num_rounds=20)).ratings}
    assert board["c"].ci_low is None and board["c"].rank is None
    assert "too few battles" in board["c"].note
    assert board["a"].ci_low is not None and board["a"].ci_low < board["a"].rating
    assert board["a"].win_rate == pytest.approx(15 / 19)
    only_wins = leaderboard([Outcome("p", "q", "model_a")] * 30, RatingConfig(num_rounds=5))
    notes = {r.model: r.note for r in only_wins.ratings}
    assert "won every battle" in notes["p"] and "lost every battle" in notes["q"]


def test_bad_outcomes_are_refused() -> None:
    with pytest.raises(ValueError, match="winner must be one of"):
        Outcome("a", "b", "left")
    with pytest.raises(ValueError, match="two different models"):
        Outcome("a", "a", "tie")
    with pytest.raises(ValueError, match="both_bad"):
        RatingConfig(both_bad="draw")
