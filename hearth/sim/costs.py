"""StepCosts: how long one engine step takes, from measurements (costs/*.json): a prefill
costs a fixed part plus a per-token part; a decode step's time is interpolated between the
measured batch sizes (linearly; beyond the largest, extrapolated from the last two). A mixed
step (prefill chunks and decodes together, as the scheduler makes them) costs the decode
step plus the prefill tokens' share."""

from __future__ import annotations

import json
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path

COSTS_DIR = Path(__file__).resolve().parent / "costs"
DEFAULT_COSTS = "smollm2-135m-q4_1-2core"


@dataclass(frozen=True)
class StepCosts:
    prefill_fixed_s: float
    prefill_per_token_s: float
    decode_batches: tuple[int, ...]
    decode_step_s: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.decode_batches) < 2 or len(self.decode_batches) != len(self.decode_step_s):
            raise ValueError("decode_batches and decode_step_s: two or more matching points")
        if list(self.decode_batches) != sorted(self.decode_batches):
            raise ValueError("decode_batches must be increasing")
        if self.prefill_per_token_s <= 0:
            raise ValueError(f"prefill_per_token_s must be > 0, got {self.prefill_per_token_s}")

    @classmethod
    def load(cls, name: str = DEFAULT_COSTS, threads: int = 1) -> StepCosts:
        """The costs measured for `threads` torch threads in costs/<name>.json."""
        data = json.loads((COSTS_DIR / f"{name}.json").read_text())
        try:
            entry = data["threads"][str(threads)]
        except KeyError:
            have = ", ".join(data["threads"])
            raise ValueError(
                f"{name}: no costs measured for {threads} threads (have {have})"
            ) from None
        points = sorted((int(b), float(t)) for b, t in entry["decode_step_s"].items())
        return cls(
            prefill_fixed_s=max(float(entry["prefill_fixed_s"]), 0.0),
            prefill_per_token_s=float(entry["prefill_per_token_s"]),
            decode_batches=tuple(b for b, _ in points),
            decode_step_s=tuple(t for _, t in points),
        )

    def decode_s(self, batch: int) -> float:
        if batch <= 0:
            return 0.0
        xs, ys = self.decode_batches, self.decode_step_s
        i = min(max(bisect_left(xs, batch), 1), len(xs) - 1)
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return max(y0 + (y1 - y0) * (batch - x0) / (x1 - x0), ys[0] * 0.5)

    def step_s(self, prefill_tokens: int, num_decodes: int) -> float:
        """One step computing `prefill_tokens` prompt tokens and `num_decodes` decodes."""
        if num_decodes:
            return self.decode_s(num_decodes) + prefill_tokens * self.prefill_per_token_s
        if prefill_tokens:
            return self.prefill_fixed_s + prefill_tokens * self.prefill_per_token_s
        return 0.0
