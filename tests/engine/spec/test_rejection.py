"""The general acceptance rule: accept d with min(1, p/q), else draw from norm(max(0, p - q)):
the emitted token is distributed as p (chi-square over many draws, fixed seed)."""

from __future__ import annotations

import torch

from hearth.engine.spec.rejection import accept_or_resample


def _p_value(observed: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * observed.sum()
    keep = expected > 0
    stat = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    df = int(keep.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2.0), stat / 2))


def test_the_emitted_token_is_distributed_as_the_target() -> None:
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([0.05, 0.4, 0.25, 0.2, 0.1], dtype=torch.float64)
    q = torch.tensor([0.5, 0.1, 0.1, 0.1, 0.2], dtype=torch.float64)  # a poor drafter
    counts = torch.zeros(5, dtype=torch.float64)
    accepted = 0
    for _ in range(4000):
        draft = int(torch.multinomial(q, 1, generator=g))
        token, ok = accept_or_resample(p, q, draft, g)
        counts[token] += 1
        accepted += ok
    assert _p_value(counts, p) > 0.001
    # a naive "always keep the draft" would follow q: the test tells them apart
    assert _p_value(counts, q) < 1e-6
    # acceptance is sum(min(p, q)) = 0.05 + 0.1 + 0.1 + 0.1 + 0.1 = 0.45
    assert abs(accepted / 4000 - 0.45) < 0.03


def test_one_hot_drafter_reduces_to_sample_and_compare() -> None:
    g = torch.Generator().manual_seed(1)
    p = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    q = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    results = [accept_or_resample(p, q, 1, g) for _ in range(3000)]
    kept = sum(ok for _, ok in results) / 3000
    assert abs(kept - 0.2) < 0.03  # P(keep) = p(d)
    assert all(tok != 1 for tok, ok in results if not ok)  # a rejection never emits d
