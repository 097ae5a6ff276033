"""The fused head + cross-entropy equals autograd through the plain logits: values and the
hidden states' gradient, in chunks, with soft-capping, under per-row weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hearth.tune.loss import linear_cross_entropy


@pytest.mark.parametrize("softcap", [None, 3.0])
def test_linear_cross_entropy_equals_autograd(softcap: float | None) -> None:
    torch.manual_seed(0)
    weight = torch.randn(50, 16)
    targets = torch.randint(0, 50, (13,))
    weights = torch.rand(13)  # per-row weights, as DPO's sums per sequence give
    h1 = torch.randn(13, 16, requires_grad=True)
    h2 = h1.detach().clone().requires_grad_(True)
    logits = h1 @ weight.t()
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    want = F.cross_entropy(logits, targets, reduction="none")
    (want * weights).sum().backward()
    got = linear_cross_entropy(h2, weight, targets, softcap, chunk=4)
    (got * weights).sum().backward()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert h1.grad is not None and h2.grad is not None
    torch.testing.assert_close(h2.grad, h1.grad, rtol=1e-5, atol=1e-6)


def test_linear_cross_entropy_without_grad_gives_values_only() -> None:
    torch.manual_seed(1)
    weight, hidden = torch.randn(20, 8), torch.randn(5, 8)
    targets = torch.randint(0, 20, (5,))
    with torch.no_grad():
        got = linear_cross_entropy(hidden, weight, targets)
    torch.testing.assert_close(got, F.cross_entropy(hidden @ weight.t(), targets, reduction="none"))


def test_a_target_far_below_the_best_logit_keeps_its_exact_loss() -> None:
    """The softmax's probability of such a target underflows float32; its loss still comes
    out exact (logsumexp - logit) and finite, beside ordinary rows."""
    weight = torch.eye(4)
    hidden = torch.tensor([[200.0, 0.0, 0.0, 0.0], [1.0, 2.0, 0.0, 0.0]], requires_grad=True)
    targets = torch.tensor([1, 1])
    got = linear_cross_entropy(hidden, weight, targets)
    want = F.cross_entropy(hidden.detach(), targets, reduction="none")
    assert float(got[0].detach()) == pytest.approx(200.0)
    torch.testing.assert_close(got.detach(), want)
    got.sum().backward()
    assert hidden.grad is not None and bool(torch.isfinite(hidden.grad).all())
