"""The C RMSNorm, SiLU gate and rope + cache write against the torch code they stand in for
(norms.py, mlp.py, rope.py), which the decoder tests check against transformers. bfloat16:
the same values, except where a float32 sum in another order moves a value across a
rounding boundary (one bf16 step). float32: within a few ulps (one rounding per step as in
torch, sums and fused products in another order)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hearth.model.cpu import decode_ops
from hearth.model.cpu.backend import CpuBackend
from hearth.model.kv_cache import KVCache
from hearth.model.layers.norms import RMSNorm
from hearth.model.layers.rope import apply_rope

pytestmark = [
    pytest.mark.skipif(not decode_ops.available(), reason="kernel unavailable (no C compiler)"),
    pytest.mark.usefixtures("isa_level"),  # each instruction-set level's build (conftest.py)
]


def _torch_norm(x: torch.Tensor, w: torch.Tensor, eps: float, unit_offset: bool) -> torch.Tensor:
    x32 = x.float()
    normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    if unit_offset:
        return (normed * (1.0 + w.float())).to(x.dtype)
    return w * normed.to(x.dtype)


def _same_up_to_one_step(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.dtype == want.dtype == torch.bfloat16 and got.shape == want.shape
    step = want.float().abs() * 2**-7 + 1e-30
    diff = (got.float() - want.float()).abs()
    assert bool((diff <= step).all()), float(diff.max())
    assert float((diff > 0).float().mean()) < 0.01  # nearly all bit-identical


@pytest.mark.parametrize("rows", [1, 7, 130])
@pytest.mark.parametrize("unit_offset", [False, True])
def test_rms_norm_matches_torch(rows: int, unit_offset: bool) -> None:
    torch.manual_seed(rows)
    x = (torch.randn(rows, 576) * 3).bfloat16()
    w = torch.randn(576).bfloat16()
    _same_up_to_one_step(
        decode_ops.rms_norm(x, w, 1e-5, unit_offset), _torch_norm(x, w, 1e-5, unit_offset)
    )


def test_rms_norm_module_takes_the_kernel_outside_autograd() -> None:
    norm = RMSNorm(64, 1e-6, ops=CpuBackend())
    norm.weight.data = torch.randn(64).bfloat16()
    x = torch.randn(3, 64).bfloat16()
    _same_up_to_one_step(norm(x), _torch_norm(x, norm.weight, 1e-6, False))
    norm.weight.data = norm.weight.data.float()
    x32 = torch.randn(3, 64)
    torch.testing.assert_close(norm(x32), _torch_norm(x32, norm.weight, 1e-6, False))
    # a tensor that needs a gradient (LoRA training) stays on torch, which has a backward
    x32.requires_grad_(True)
    out = norm(x32)
    assert out.grad_fn is not None
    assert torch.equal(out, _torch_norm(x32, norm.weight, 1e-6, False))


@pytest.mark.parametrize("rows", [1, 7, 130])
@pytest.mark.parametrize("unit_offset", [False, True])
def test_float32_rms_norm_matches_torch(rows: int, unit_offset: bool) -> None:
    torch.manual_seed(rows)
    x = torch.randn(rows, 576) * 3
    w = torch.randn(576)
    got = decode_ops.rms_norm(x, w, 1e-5, unit_offset)
    want = _torch_norm(x, w, 1e-5, unit_offset)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("rows", [1, 5, 100])
def test_float32_silu_mul_matches_torch(rows: int) -> None:
    torch.manual_seed(40 + rows)
    gate_up = torch.randn(rows, 2 * 1536) * 4
    gate_up[0, :4] = torch.tensor([-200.0, 200.0, 0.0, -1e-8])  # exp's clamps, zero
    gate, up = gate_up.split(1536, dim=-1)
    torch.testing.assert_close(
        decode_ops.silu_mul(gate_up), F.silu(gate) * up, rtol=2e-6, atol=1e-6
    )


@pytest.mark.parametrize("rows", [1, 5, 100])
def test_silu_mul_matches_torch(rows: int) -> None:
    torch.manual_seed(20 + rows)
    gate_up = (torch.randn(rows, 2 * 1536) * 4).bfloat16()
    gate, up = gate_up.split(1536, dim=-1)
    _same_up_to_one_step(decode_ops.silu_mul(gate_up), F.silu(gate) * up)


def test_not_applied_to_mixed_strided_or_grad_inputs() -> None:
    assert decode_ops.applies(torch.zeros(2, 8, dtype=torch.bfloat16))
    assert decode_ops.applies(torch.zeros(2, 8), torch.zeros(8))
    assert not decode_ops.applies(torch.zeros(2, 8), torch.zeros(8, dtype=torch.bfloat16))
    assert not decode_ops.applies(torch.zeros(2, 8, dtype=torch.float16))
    assert not decode_ops.applies(torch.zeros(8, 2, dtype=torch.bfloat16).t())
    assert not decode_ops.applies(torch.zeros(2, 8, requires_grad=True))
    with torch.no_grad():
        assert decode_ops.applies(torch.zeros(2, 8, requires_grad=True))


def test_switched_off_the_module_runs_torch() -> None:
    norm = RMSNorm(64, 1e-6, ops=CpuBackend(disabled=("decode-ops",)))
    norm.weight.data = torch.randn(64).bfloat16()
    x = torch.randn(3, 64).bfloat16()
    assert torch.equal(norm(x), _torch_norm(x, norm.weight, 1e-6, False))
    norm = RMSNorm(16, 1e-6)
    norm.weight.data = torch.ones(16).bfloat16()
    x = torch.randn(2, 16).bfloat16()
    assert torch.equal(norm(x), _torch_norm(x, norm.weight, 1e-6, False))


@pytest.mark.parametrize("rotary_dim", [64, 32])
def test_rope_cache_matches_torch(rotary_dim: int) -> None:
    torch.manual_seed(rotary_dim)
    heads, kv_heads, dim, tokens = 9, 3, 64, 4
    qkv = torch.randn(tokens, (heads + 2 * kv_heads) * dim).bfloat16()
    angles = torch.rand(tokens, rotary_dim // 2) * 6
    cos, sin = angles.cos().bfloat16(), angles.sin().bfloat16()
    slots = torch.tensor([5, 0, 17, 9])
    key = torch.zeros(3, 8, kv_heads, dim, dtype=torch.bfloat16)
    value = torch.zeros_like(key)
    q = decode_ops.rope_cache(qkv, cos, sin, key, value, slots, heads)

    want_key, want_value = torch.zeros_like(key), torch.zeros_like(value)
    cache = KVCache(want_key, want_value)
    wq, wk, wv = qkv.split([heads * dim, kv_heads * dim, kv_heads * dim], dim=-1)
    wq = apply_rope(wq.view(tokens, heads, dim), cos, sin)
    wk = apply_rope(wk.reshape(tokens, kv_heads, dim), cos, sin)
    cache.write(slots, wk, wv.reshape(tokens, kv_heads, dim))
    assert torch.equal(q, wq)
    assert torch.equal(key, want_key)
    assert torch.equal(value, want_value)


@pytest.mark.parametrize("tokens", [3, 70])
def test_float32_rope_cache_matches_torch(tokens: int) -> None:
    torch.manual_seed(tokens)
    heads, kv_heads, dim = 9, 3, 64
    qkv = torch.randn(tokens, (heads + 2 * kv_heads) * dim)
    angles = torch.rand(tokens, dim // 2) * 6
    cos, sin = angles.cos(), angles.sin()
    slots = torch.randperm(8 * 16)[:tokens]  # 70 tokens: split over threads
    key = torch.zeros(8, 16, kv_heads, dim)
    value = torch.zeros_like(key)
    q = decode_ops.rope_cache(qkv, cos, sin, key, value, slots, heads)

    want_key, want_value = torch.zeros_like(key), torch.zeros_like(value)
    wq, wk, wv = qkv.split([heads * dim, kv_heads * dim, kv_heads * dim], dim=-1)
    wq = apply_rope(wq.view(tokens, heads, dim), cos, sin)
    wk = apply_rope(wk.reshape(tokens, kv_heads, dim), cos, sin)
    KVCache(want_key, want_value).write(slots, wk, wv.reshape(tokens, kv_heads, dim))
    torch.testing.assert_close(q, wq, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(key, want_key, rtol=1e-6, atol=1e-6)
    assert torch.equal(value, want_value)  # copied, not computed
