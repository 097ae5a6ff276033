"""The encoder's oneDNN projections against the reference EncoderOps: linear, linear + GELU
(exact and tanh) and linear + residual add, in float32 and bfloat16; inputs that need
autograd take the reference."""

from __future__ import annotations

import pytest
import torch

from hearth.model.cpu.encoder_ops import OneDnnEncoderOps, available, encoder_ops
from hearth.model.layers.encoder import EncoderOps

pytestmark = pytest.mark.skipif(not available(), reason="this PyTorch has no oneDNN linear")


def _tensors(dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(37, 64, generator=gen)
    w = torch.randn(96, 64, generator=gen) * 0.2
    b = torch.randn(96, generator=gen)
    r = torch.randn(37, 96, generator=gen)
    return tuple(t.to(dtype) for t in (x, w, b, r))


@pytest.mark.parametrize(
    ("dtype", "tol"), [(torch.float32, 1e-5), (torch.bfloat16, 5e-2)], ids=["fp32", "bf16"]
)
def test_fused_projections_equal_the_reference(dtype: torch.dtype, tol: float) -> None:
    x, w, b, r = _tensors(dtype)
    fast, ref = OneDnnEncoderOps(), EncoderOps()
    with torch.inference_mode():
        pairs = [
            (fast.linear(x, w, b), ref.linear(x, w, b)),
            (fast.linear_gelu(x, w, b, "none"), ref.linear_gelu(x, w, b, "none")),
            (fast.linear_gelu(x, w, b, "tanh"), ref.linear_gelu(x, w, b, "tanh")),
            (fast.linear_add(x, w, b, r), ref.linear_add(x, w, b, r)),
        ]
    for got, want in pairs:
        assert got.dtype == dtype and got.shape == (37, 96)
        torch.testing.assert_close(got.float(), want.float(), atol=tol, rtol=tol)


def test_autograd_takes_the_reference_and_choice_is_onednn() -> None:
    x, w, b, _ = _tensors(torch.float32)
    w.requires_grad_(True)
    out = OneDnnEncoderOps().linear_gelu(x, w, b, "none")
    out.sum().backward()  # the reference road keeps the graph
    assert w.grad is not None
    assert encoder_ops().name == "onednn"
