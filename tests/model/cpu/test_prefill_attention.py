"""The C causal float32 prefill attention (prefill_attention.c) against a float64
softmax: from scratch and over a cached prefix, GQA groups 1 to 8, head widths 64 to 256,
lengths that are not multiples of its query tile (16) or key block (128), one thread and
two; and prefill_attention sends what it takes there and the rest to SDPA."""

from __future__ import annotations

import pytest
import torch

from hearth.model.cpu import prefill_attention as prefill_kernel
from hearth.model.cpu.backend import CpuBackend
from hearth.model.layers.attention import prefill_attention as attention

pytestmark = pytest.mark.skipif(not prefill_kernel.available(), reason="no C compiler or AVX-512F")
BACKEND = CpuBackend()


def prefill_attention(*args: object, **kwargs: object) -> torch.Tensor:
    return attention(*args, **kwargs, ops=BACKEND)  # type: ignore[arg-type]


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """q (L, H, D) at the last L of C positions; k, v (C, Hkv, D). float64."""
    length, context = q.shape[0], k.shape[0]
    group = q.shape[1] // k.shape[1]
    kk = k.double().repeat_interleave(group, 1)
    vv = v.double().repeat_interleave(group, 1)
    scores = torch.einsum("lhd,chd->hlc", q.double(), kk) * scale
    q_pos = torch.arange(context - length, context)[:, None]
    allowed = q_pos >= torch.arange(context)[None, :]
    probs = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    return torch.einsum("hlc,chd->lhd", probs, vv)


@pytest.mark.parametrize(
    ("length", "context"),
    [(1, 1), (5, 5), (37, 37), (200, 200), (1, 300), (17, 160), (130, 290)],
)
@pytest.mark.parametrize(("heads", "kv_heads", "dim"), [(9, 3, 64), (4, 4, 128), (8, 1, 256)])
@pytest.mark.parametrize("threads", [1, 2])
def test_matches_float64(
    length: int, context: int, heads: int, kv_heads: int, dim: int, threads: int
) -> None:
    gen = torch.Generator().manual_seed(length * 1000 + context + dim)
    q = torch.randn(length, heads, dim, generator=gen) * 2
    k = torch.randn(context, kv_heads, dim, generator=gen) * 2
    v = torch.randn(context, kv_heads, dim, generator=gen)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = prefill_kernel.causal_attention(q, k, v, dim**-0.5)
    finally:
        torch.set_num_threads(before)
    assert got.shape == (length, heads, dim) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), _reference(q, k, v, dim**-0.5), rtol=1e-5, atol=1e-5)


def test_supports_only_its_shapes() -> None:
    q, k = torch.zeros(4, 6, 64), torch.zeros(9, 2, 64)
    assert prefill_kernel.supports(q, k, k)
    assert not prefill_kernel.supports(q.bfloat16(), k.bfloat16(), k.bfloat16())
    assert not prefill_kernel.supports(
        torch.zeros(4, 6, 32), torch.zeros(9, 2, 32), torch.zeros(9, 2, 32)
    )
    assert not prefill_kernel.supports(q, k, torch.zeros(9, 2, 128))  # Dk != Dv
    assert not prefill_kernel.supports(torch.zeros(4, 18, 64), torch.zeros(9, 1, 64), k[:, :1])
    assert not prefill_kernel.supports(q.requires_grad_(True), k, k)


def test_prefill_attention_routes_to_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    kernel = prefill_kernel.causal_attention

    def counted(q: torch.Tensor, *args: object) -> torch.Tensor:
        calls.append(q.shape[0])
        return kernel(q, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(prefill_kernel, "causal_attention", counted)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(20, 6, 64, generator=gen)
    k = torch.randn(50, 2, 64, generator=gen)
    v = torch.randn(50, 2, 64, generator=gen)
    pos = torch.arange(30, 50)
    want = _reference(q, k, v, 0.2)
    out = prefill_attention(q, k, v, pos, 0.2)
    assert calls == [20]
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5)
    prefill_attention(q, k, v, pos, 0.2, sliding_window=8)  # a window that cuts: SDPA
    prefill_attention(q, k, v, pos, 0.2, sliding_window=64)  # one that does not: kernel
    prefill_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), pos, 0.2)  # bf16: SDPA
    assert calls == [20, 20]
