"""The encoder's oneDNN projections against the reference EncoderOps: linear, linear + GELU
(exact and tanh) and linear + residual add, in float32 and bfloat16; the residual add and
post-norm of bfloat16 projections into a float32 stream (encoder_norm.c); inputs that need
autograd take the reference."""

from __future__ import annotations

import pytest
import torch

from hearth.model.cpu.encoder_ops import NORM_KERNEL, OneDnnEncoderOps, available, encoder_ops
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


def test_add_norm_keeps_the_residual_in_float32() -> None:
    # bfloat16 projection, float32 residual: the C pass (in place) against the reference
    # (promote, add, LayerNorm in float32, then the bfloat16 copy)
    assert NORM_KERNEL.load() is not None
    x, w, b, _ = (t.to(torch.bfloat16) for t in _tensors(torch.float32))
    residual = _tensors(torch.float32)[3]
    norm = torch.nn.LayerNorm(96, eps=1e-12)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 1.5, 96))
        norm.bias.copy_(torch.linspace(-0.1, 0.1, 96))
    fast = OneDnnEncoderOps(norm_kernel=True)
    assert encoder_ops().norm_kernel  # type: ignore[attr-defined]
    with torch.inference_mode():
        want, want_low = EncoderOps().linear_add_norm(x, w, b, residual.clone(), norm)
        stream = residual.clone()
        got, got_low = fast.linear_add_norm(x, w, b, stream, norm)
    assert got.dtype == torch.float32 and got_low.dtype == torch.bfloat16
    assert got.data_ptr() == stream.data_ptr()  # written in place: no (T, H) temporaries
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_low, want_low, atol=0, rtol=2**-8)  # one bf16 rounding
    assert (got - got_low.float()).abs().max() > 0  # the stream itself was not rounded
