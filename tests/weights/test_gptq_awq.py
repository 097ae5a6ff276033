"""GPTQ and AWQ 4-bit tensors, packed here as the formats document it from a tiny random
weight, unpack into hearth's int4 parts that de-quantize to exactly the formats' reference
w = scale * (q - zero), and run on hearth's int4 linear (Int4Linear) to the same outputs."""

from __future__ import annotations

import pytest
import torch

from hearth.errors import UnsupportedModelError
from hearth.model.backend import select_backend
from hearth.model.layers.quant import Int4Linear, Int4Weight
from hearth.weights.gptq_awq import AWQ_ORDER, unpack_awq, unpack_gptq

N, K, GROUP = 64, 128, 32


def _rtn(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric 4-bit round-to-nearest per group: codes (K, N), zeros (G, N), scales (G, N)
    (fp16, as checkpoints store them)."""
    g = w.t().reshape(K // GROUP, GROUP, N)  # (G, group, N)
    lo, hi = g.amin(dim=1), g.amax(dim=1)
    scales = ((hi - lo) / 15).clamp(min=1e-8).half()
    zeros = torch.round(-lo / scales.float()).clamp(0, 15).int()
    codes = torch.round(g / scales.float()[:, None] + zeros[:, None]).clamp(0, 15).int()
    return codes.reshape(K, N), zeros, scales


def _reference(codes: torch.Tensor, zeros: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    z = zeros.repeat_interleave(GROUP, 0).float()
    s = scales.repeat_interleave(GROUP, 0).float()
    return (s * (codes.float() - z)).t()  # (N, K)


def _pack(values: torch.Tensor, order: tuple[int, ...] = tuple(range(8))) -> torch.Tensor:
    """Pack the last dimension eight nibbles a word, nibble i holding column order[i]."""
    v = values.to(torch.int64).reshape(*values.shape[:-1], -1, 8)
    word = torch.zeros(v.shape[:-1], dtype=torch.int64)
    for i, col in enumerate(order):
        word |= v[..., col] << (4 * i)
    return (word - ((word >> 31) << 32)).to(torch.int32)  # as int32 bits


@pytest.fixture
def quantized() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return _rtn(torch.randn(N, K) * 0.05)


def _check(q: torch.Tensor, sz: torch.Tensor, ref: torch.Tensor) -> None:
    weight = Int4Weight(q, sz.to(torch.bfloat16), GROUP)
    # the parts are exact in float32; the kernels keep (scale, offset) in bf16
    exact = (q.float() - 8) * sz[..., 0].repeat_interleave(GROUP, 0).t()
    exact = exact + sz[..., 1].repeat_interleave(GROUP, 0).t()
    torch.testing.assert_close(exact, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weight.dequantize(), ref, atol=2e-3, rtol=1e-2)
    x = torch.randn(3, K)
    with torch.inference_mode():
        # on the backend hearth selects here (the cpu kernels where they run)
        got = Int4Linear(weight, ops=select_backend())(x.to(torch.bfloat16)).float()
    want = x @ weight.dequantize().t()
    torch.testing.assert_close(got, want, atol=5e-2, rtol=5e-2)


def test_gptq(quantized: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    codes, zeros, scales = quantized
    qweight = _pack(codes.t()).t().contiguous()  # (K / 8, N): along the inputs
    qzeros = _pack(zeros - 1)  # v1 stores zero - 1
    g_idx = torch.arange(K, dtype=torch.int32) // GROUP
    q, sz = unpack_gptq(qweight, qzeros, scales, GROUP, g_idx)
    _check(q, sz, _reference(codes, zeros, scales))
    with pytest.raises(UnsupportedModelError, match="act-order"):
        unpack_gptq(qweight, qzeros, scales, GROUP, g_idx.flip(0))


def test_awq(quantized: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    codes, zeros, scales = quantized
    q, sz = unpack_awq(_pack(codes, AWQ_ORDER), _pack(zeros, AWQ_ORDER), scales, GROUP)
    _check(q, sz, _reference(codes, zeros, scales))
    with pytest.raises(UnsupportedModelError, match="groups of"):
        unpack_awq(_pack(codes, AWQ_ORDER), _pack(zeros, AWQ_ORDER), scales, 48)
