"""Bradley–Terry fits by maximum likelihood, as Chatbot Arena computes them (FastChat
`rating_systems.py`): the probability that a beats b is sigmoid(alpha * (r_a - r_b)) with
alpha = ln(base); a tie is an observation of 0.5 (half a win, half a loss); rows are
(a, b, outcome) with a weight (how often that row occurred). Optional extra columns
(style features) get coefficients of their own (`fit_contextual`).

FastChat minimises the same objective with scipy's L-BFGS; scipy is not one of hearth's
dependencies, and the problem is small (one parameter per model), so this solves it by
Newton's method with a backtracking line search in numpy: a few iterations to the optimum
rather than L-BFGS's tolerance-limited stop. Knows nothing of battles, names or storage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# A vanishing ridge keeps Newton's system solvable where the MLE does not exist (a model
# that won or lost every battle, or one absent from a bootstrap sample, whose rating then
# stays 0 as under FastChat's L-BFGS). On identifiable data it moves ratings by ~1e-6 points.
_TINY_RIDGE = 1e-9
_MAX_ITER = 100
_GRAD_TOL = 1e-10


@dataclass(frozen=True)
class Rows:
    """Distinct observations: `matchups` (N, 2) model indices, `outcomes` (N,) in {0, 0.5,
    1} for the first model, `weights` (N,) how often each occurred."""

    matchups: IntArray
    outcomes: FloatArray
    weights: FloatArray


def _sigmoid(x: FloatArray) -> FloatArray:
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * x))  # stable for large |x|
    return out


def _design(matchups: IntArray, num_models: int, alpha: float) -> FloatArray:
    """(N, num_models) with +alpha at a's column and -alpha at b's."""
    x = np.zeros((len(matchups), num_models))
    rows = np.arange(len(matchups))
    x[rows, matchups[:, 0]] += alpha
    x[rows, matchups[:, 1]] -= alpha
    return x


def _newton(x: FloatArray, outcomes: FloatArray, weights: FloatArray, ridge: float) -> FloatArray:
    """Minimise sum_i w_i * logloss(sigmoid(x_i . theta), y_i) + ridge/2 * |theta|^2."""
    theta = np.zeros(x.shape[1])

    def loss(t: FloatArray) -> float:
        z = x @ t
        # -[y log p + (1-y) log(1-p)] = log(1 + e^z) - y z, computed without overflow
        value = float(np.sum(weights * (np.logaddexp(0.0, z) - outcomes * z)))
        return value + 0.5 * ridge * float(t @ t)

    current = loss(theta)
    for _ in range(_MAX_ITER):
        p = _sigmoid(x @ theta)
        grad = x.T @ (weights * (p - outcomes)) + ridge * theta
        if np.max(np.abs(grad)) < _GRAD_TOL:
            break
        hess = (x * (weights * p * (1.0 - p))[:, None]).T @ x
        hess[np.diag_indices_from(hess)] += ridge
        step = np.linalg.solve(hess, -grad)
        size = 1.0
        while size > 1e-8:  # backtracking: Newton overshoots only far from the optimum
            candidate = theta + size * step
            value = loss(candidate)
            if value <= current + 1e-4 * size * float(grad @ step):
                break
            size *= 0.5
        else:
            break  # no decrease left in float64: we are at the optimum
        theta, current = candidate, value
    return theta


def fit(
    rows: Rows,
    num_models: int,
    alpha: float = float(np.log(10.0)),
    anchor: int | None = None,
) -> FloatArray:
    """Unregularised BT ratings on the natural scale (multiply by `scale` for Elo points),
    centred on 0 over the models. With `anchor`, that competitor is a bar held at the
    others' mean (0): it is not fitted, and the others stay centred on it."""
    total = rows.weights.sum()
    if total <= 0:
        return np.zeros(num_models)
    x = _design(rows.matchups, num_models, alpha)
    # the loss is a mean over battles (FastChat scales bootstrap weights the same way) so the
    # tolerance means the same thing for 50 battles and for 50,000
    weights = rows.weights / total
    if anchor is None:
        theta = _newton(x, rows.outcomes, weights, _TINY_RIDGE)
        return theta - theta.mean()
    free = np.arange(num_models) != anchor
    # fit in the subspace where the free ratings sum to 0: otherwise a bar that never loses
    # pulls every model down by the same amount and its games change nothing
    basis = np.linalg.svd(np.ones((1, int(free.sum()))))[2][1:].T  # (F, F-1), orthonormal
    theta = np.zeros(num_models)
    theta[free] = basis @ _newton(x[:, free] @ basis, rows.outcomes, weights, _TINY_RIDGE)
    return theta


def fit_contextual(
    matchups: IntArray,
    features: FloatArray,
    outcomes: FloatArray,
    num_models: int,
    alpha: float = float(np.log(10.0)),
    reg: float = 0.5,
) -> tuple[FloatArray, FloatArray]:
    """Style control: BT with one coefficient per feature column, L2-regularised as FastChat
    does (objective = sum of log losses + reg/2 * |params|^2 over ratings and coefficients,
    one row per battle). Returns (ratings, coefficients), ratings on the natural scale."""
    x = np.hstack([_design(matchups, num_models, alpha), features])
    theta = _newton(x, outcomes, np.ones(len(outcomes)), reg)
    return theta[:num_models], theta[num_models:]
