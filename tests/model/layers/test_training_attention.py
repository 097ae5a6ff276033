"""The training attention's hand-written forward and backward against autograd over the
plain masked softmax, in float64 (exact to rounding), over several query blocks (the last
one short), with GQA, equal and unequal key / value widths; and in bf16 within its
rounding."""

from __future__ import annotations

import pytest
import torch

from hearth.model.layers.training_attention import causal_training_attention


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    length, heads, _ = q.shape
    group = heads // k.shape[1]
    kk = k.repeat_interleave(group, dim=1).transpose(0, 1)  # (H, L, Dk)
    vv = v.repeat_interleave(group, dim=1).transpose(0, 1)
    scores = q.transpose(0, 1) @ kk.transpose(1, 2) * scale  # (H, L, L)
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    probs = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
    return (probs @ vv).transpose(0, 1)  # (L, H, Dv)


def _grads(fn: object, inputs: list[torch.Tensor], grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves, 0.3)  # type: ignore[operator]
    return (out.detach(), *torch.autograd.grad(out, leaves, grad))


@pytest.mark.parametrize(("length", "heads", "kv_heads", "dk", "dv"), [
    (300, 6, 2, 16, 16), (129, 4, 4, 8, 12), (40, 4, 1, 16, 8),
])  # fmt: skip
def test_equals_autograd_over_the_masked_softmax(
    length: int, heads: int, kv_heads: int, dk: int, dv: int
) -> None:
    gen = torch.Generator().manual_seed(3)
    shapes = [(length, heads, dk), (length, kv_heads, dk), (length, kv_heads, dv)]
    inputs = [torch.randn(*s, generator=gen, dtype=torch.float64) for s in shapes]
    grad = torch.randn(length, heads, dv, generator=gen, dtype=torch.float64)
    got = _grads(causal_training_attention, inputs, grad)
    want = _grads(_reference, inputs, grad)
    for mine, theirs in zip(got, want, strict=True):
        assert mine.shape == theirs.shape
        assert float((mine - theirs).abs().max()) <= 1e-12 * float(theirs.abs().max())


def test_bf16_within_its_rounding() -> None:
    gen = torch.Generator().manual_seed(5)
    shapes = [(260, 9, 64), (260, 3, 64), (260, 3, 64)]
    inputs = [torch.randn(*s, generator=gen) for s in shapes]
    grad = torch.randn(260, 9, 64, generator=gen)
    got = _grads(causal_training_attention, [t.bfloat16() for t in inputs], grad.bfloat16())
    want = _grads(_reference, inputs, grad)
    for mine, theirs in zip(got, want, strict=True):
        assert mine.dtype == torch.bfloat16
        err = float((mine.float() - theirs).abs().max()) / float(theirs.abs().max())
        assert err <= 3e-2
