"""RMSNorm under autograd (a hand-written backward) against autograd through the plain
float32 ops (it computes in float32, as the reference does): the input's and the weight's gradients, Llama's and Gemma's
(unit offset) forms."""

from __future__ import annotations

import pytest
import torch

from hearth.model.layers.norms import rms_norm_trained


def _plain(x: torch.Tensor, w: torch.Tensor, eps: float, unit_offset: bool) -> torch.Tensor:
    normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return normed * (1.0 + w) if unit_offset else w * normed


@pytest.mark.parametrize("unit_offset", [False, True])
def test_gradients_equal_autograd(unit_offset: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, 16, generator=gen, dtype=torch.float32)
    w = torch.randn(16, generator=gen, dtype=torch.float32)
    grad = torch.randn(7, 3, 16, generator=gen, dtype=torch.float32)
    results = []
    for fn in (rms_norm_trained, _plain):
        xs, ws = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        out = fn(xs, ws, 1e-6, unit_offset)
        results.append((out.detach(), *torch.autograd.grad(out, (xs, ws), grad)))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
