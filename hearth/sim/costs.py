"""StepCosts: how long one engine step takes, as a function of what the step computes
(StepShape: prompt tokens, decode rows, and the attention work of each), fitted by least
squares to steps timed on a real engine (tools/measure_step_costs.py writes costs/*.json).

A linear model in those terms, not a table per batch size: the shape of the cost (a fixed
part per step, a part per token through the weights, a part per (query, key) pair of
attention) holds when the machine's speed shifts, so a fit on a few hundred steps of any
mix predicts the mixed steps of a burst the calibration never ran. The fit minimises the
relative error (a 30 ms decode step counts as much as a 3 s prefill) and keeps every
coefficient >= 0 (a term that fits negative is dropped and the rest refitted)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

COSTS_DIR = Path(__file__).resolve().parent / "costs"
DEFAULT_COSTS = "smollm2-135m-q4_1-2core"


@dataclass(frozen=True)
class StepShape:
    """What one step computes: prompt tokens (every row of a prefill chunk), decode rows
    (one new token of a sequence past its prompt), and their attention work: (query, key)
    pairs of the prefill rows and keys read by the decode rows."""

    prefill_tokens: int = 0
    decode_rows: int = 0
    prefill_pairs: int = 0
    decode_keys: int = 0

    def features(self) -> tuple[float, ...]:
        # attention terms per thousand, so every coefficient is of a similar size
        return (
            1.0,
            float(self.prefill_tokens),
            float(self.decode_rows),
            self.prefill_pairs / 1000,
            self.decode_keys / 1000,
        )


@dataclass(frozen=True)
class StepCosts:
    """Seconds: per step, per prompt token, per decode row, per 1,000 prefill attention
    pairs, per 1,000 keys decode rows read."""

    fixed_s: float
    prefill_token_s: float
    decode_row_s: float
    prefill_kpair_s: float = 0.0
    decode_kkey_s: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(f"{f.name} must be >= 0, got {getattr(self, f.name)}")
        if self.prefill_token_s <= 0 and self.prefill_kpair_s <= 0:
            raise ValueError("prefill_token_s or prefill_kpair_s must be > 0: a prompt costs time")

    def step_s(self, shape: StepShape) -> float:
        if not shape.prefill_tokens and not shape.decode_rows:
            return 0.0
        coefficients = (
            self.fixed_s,
            self.prefill_token_s,
            self.decode_row_s,
            self.prefill_kpair_s,
            self.decode_kkey_s,
        )
        return sum(c * x for c, x in zip(coefficients, shape.features(), strict=True))

    def to_dict(self) -> dict[str, float]:
        return {k: float(f"{v:.6g}") for k, v in asdict(self).items()}

    @classmethod
    def fit(cls, samples: Sequence[tuple[StepShape, float]]) -> StepCosts:
        """Least squares of relative error over timed steps, every coefficient >= 0."""
        if len(samples) < 5:
            raise ValueError(f"need at least 5 timed steps to fit, got {len(samples)}")
        rows = [[x / t for x in shape.features()] for shape, t in samples if t > 0]
        active = list(range(5))
        while True:
            beta = _least_squares([[r[j] for j in active] for r in rows], [1.0] * len(rows))
            worst = min(range(len(active)), key=lambda i: beta[i])
            if beta[worst] >= 0:
                break
            del active[worst]
        full = [0.0] * 5
        for j, b in zip(active, beta, strict=True):
            full[j] = b
        return cls(*full)

    @classmethod
    def load(cls, name: str = DEFAULT_COSTS, threads: int = 1) -> StepCosts:
        """The costs fitted for `threads` torch threads in costs/<name>.json, or in the
        file `name` where it ends in .json (tools/validate_sim.py's, before it is kept)."""
        path = Path(name) if name.endswith(".json") else COSTS_DIR / f"{name}.json"
        data = json.loads(path.read_text())
        try:
            entry = data["threads"][str(threads)]
        except KeyError:
            have = ", ".join(data["threads"])
            raise ValueError(
                f"{name}: no costs measured for {threads} threads (have {have})"
            ) from None
        return cls(**entry["costs"])


def _least_squares(a: list[list[float]], y: list[float]) -> list[float]:
    """argmin |a b - y| by the normal equations (a handful of columns; a tiny ridge keeps a
    column that is all zeros, e.g. no decode rows in the samples, at 0)."""
    n = len(a[0])
    m = [
        [sum(r[i] * r[j] for r in a) + (1e-12 if i == j else 0.0) for j in range(n)]
        for i in range(n)
    ]
    v = [sum(r[i] * yi for r, yi in zip(a, y, strict=True)) for i in range(n)]
    for col in range(n):  # Gauss-Jordan with partial pivoting
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot], v[col], v[pivot] = m[pivot], m[col], v[pivot], v[col]
        for r in range(n):
            if r != col and m[col][col]:
                f = m[r][col] / m[col][col]
                m[r] = [x - f * p for x, p in zip(m[r], m[col], strict=True)]
                v[r] -= f * v[col]
    return [v[i] / m[i][i] if m[i][i] else 0.0 for i in range(n)]
