"""The paged path: one prefill, chunked prefill and token-by-token decode through a cache
with 4-token blocks (scattered block tables) give the same logits; sequences batched
together give what each gives alone. Gemma 2 covers soft-capping and sliding windows,
Llama GQA, DeepSeek-V3 MLA (keys and values of different widths).

The prefill road on random tensors against a float64 softmax: from scratch, after a cached
prefix, several sequences in one step; GQA; windows and chunks that cut the context or not;
bf16; key/value widths that differ; soft-capping; and it stays on SDPA's flash kernel."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
import transformers as tf
from sequence_runner import SequenceRunner
from tiny_models import COMMON, backend_under_test
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile

from hearth.model.batch import AttentionMetadata
from hearth.model.cpu import paged_decode
from hearth.model.cpu.backend import CpuBackend
from hearth.model.kv_cache import KVCache
from hearth.model.layers.attention import (
    masked_prefill_attention,
    paged_attention,
    prefill_attention,
    sdpa_prefill,
)
from hearth.model.layers.ops import REFERENCE, Ops

TOL = 1e-5
A = [7, 99, 3, 41, 250, 8, 8, 8, 61, 17, 140, 33, 2, 90]  # 14 tokens: spans 4 blocks
B = [12, 201, 56, 7, 7, 180, 4, 77, 9]


def _configs() -> dict[str, Any]:
    c = COMMON
    mla = {k: v for k, v in c.items() if k != "num_key_value_heads"}
    return {
        "llama": tf.LlamaConfig(**c),
        "gemma2": tf.Gemma2Config(
            **c,
            head_dim=16,
            sliding_window=5,
            attn_logit_softcapping=3.0,
            final_logit_softcapping=2.0,
        ),
        "deepseek_v3": tf.DeepseekV3Config(
            **mla,
            num_key_value_heads=4,
            kv_lora_rank=16,
            q_lora_rank=24,
            qk_nope_head_dim=8,
            qk_rope_head_dim=8,
            v_head_dim=12,
            n_routed_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            n_group=2,
            topk_group=1,
        ),
    }


@pytest.mark.parametrize("family", list(_configs()))
def test_prefill_chunks_and_decode_agree(family: str, tiny_pair: Any) -> None:
    _, model = tiny_pair(_configs()[family])
    whole = SequenceRunner(model, 1, 32, block_size=4).step([(0, A)])[0]

    chunked = SequenceRunner(model, 1, 32, block_size=4)
    pieces = [chunked.step([(0, A[s:e])])[0] for s, e in ((0, 3), (3, 9), (9, 14))]
    assert (torch.cat(pieces) - whole).abs().max() <= TOL

    # A and B decode token by token in one batch (the batched decode path), B starting later
    both = SequenceRunner(model, 2, 32, block_size=4)
    out_a, out_b = [], []
    for i, tok in enumerate(A):
        chunks = [(0, [tok])] + ([(1, [B[i - 5]])] if 5 <= i < 5 + len(B) else [])
        logits = both.step(chunks)
        out_a.append(logits[0])
        if len(logits) > 1:
            out_b.append(logits[1])
    assert (torch.cat(out_a) - whole).abs().max() <= TOL
    b_alone = SequenceRunner(model, 1, 32, block_size=4).step([(0, B)])[0]
    assert (torch.cat(out_b) - b_alone).abs().max() <= TOL


def test_mixed_prefill_and_decode_batch(tiny_pair: Any) -> None:
    _, model = tiny_pair(_configs()["gemma2"])
    ref_a = SequenceRunner(model, 1, 32, block_size=4).step([(0, A)])[0]
    ref_b = SequenceRunner(model, 1, 32, block_size=4).step([(0, B)])[0]
    runner = SequenceRunner(model, 2, 32, block_size=4)
    first = runner.step([(0, A[:10])])[0]
    # one step: A decodes its 11th token while B prefills its first 6 tokens
    a_tok, b_chunk = runner.step([(0, A[10:11]), (1, B[:6])])
    rest_b, rest_a = runner.step([(1, B[6:]), (0, A[11:])])
    assert (torch.cat([first, a_tok, rest_a]) - ref_a).abs().max() <= TOL
    assert (torch.cat([b_chunk, rest_b]) - ref_b).abs().max() <= TOL


# --- the prefill road (prefill_attention) against a float64 softmax written here ---------

H, HKV, BLOCK = 6, 2, 4


def _reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    window: int | None,
    chunk: int | None,
    softcap: float | None,
) -> torch.Tensor:
    """q: (L, H, Dk) = the context's last L positions; k: (C, Hkv, Dk); v: (C, Hkv, Dv)."""
    length, context = q.shape[0], k.shape[0]
    group = q.shape[1] // k.shape[1]
    kk = k.double().repeat_interleave(group, 1)  # (C, H, Dk)
    vv = v.double().repeat_interleave(group, 1)  # (C, H, Dv)
    scores = torch.einsum("lhd,chd->hlc", q.double(), kk) * scale
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    q_pos = torch.arange(context - length, context)[:, None]
    k_pos = torch.arange(context)[None, :]
    allowed = q_pos >= k_pos
    if window is not None:
        allowed &= q_pos - k_pos < window
    if chunk is not None:
        allowed &= q_pos // chunk == k_pos // chunk
    probs = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    return torch.einsum("hlc,chd->lhd", probs, vv)


def _step(
    seqs: list[tuple[int, int]],
    dtype: torch.dtype = torch.float32,
    dk: int = 16,
    dv: int = 16,
    window: int | None = None,
    chunk: int | None = None,
    softcap: float | None = None,
    ops: Ops | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One paged step where sequence i has seqs[i] = (cached prefix, new tokens), on
    scattered blocks of a cache whose other slots hold garbage, on `ops` (None: the backend
    under test). Returns (paged output, float64 reference), both (T, H, Dv)."""
    gen = torch.Generator().manual_seed(sum(p * 31 + n for p, n in seqs) + dk + dv)
    cache = KVCache(
        torch.randn(64, BLOCK, HKV, dk, generator=gen).to(dtype),
        torch.randn(64, BLOCK, HKV, dv, generator=gen).to(dtype),
    )
    order = torch.randperm(64, generator=gen)
    max_blocks = max(-(-(p + n) // BLOCK) for p, n in seqs)
    tables = torch.full((len(seqs), max_blocks), -1, dtype=torch.int32)
    queries, keys, values, positions, slots, refs = [], [], [], [], [], []
    used = 0
    scale = 0.3
    for i, (prefix, new) in enumerate(seqs):
        blocks = order[used : used + -(-(prefix + new) // BLOCK)]
        used += len(blocks)
        tables[i, : len(blocks)] = blocks.int()
        seq_slots = (blocks[:, None] * BLOCK + torch.arange(BLOCK)).flatten()[: prefix + new]
        k = torch.randn(prefix + new, HKV, dk, generator=gen).to(dtype)
        v = torch.randn(prefix + new, HKV, dv, generator=gen).to(dtype)
        q = torch.randn(new, H, dk, generator=gen).to(dtype)
        cache.write(seq_slots[:prefix], k[:prefix], v[:prefix])  # the cached prefix
        queries.append(q)
        keys.append(k[prefix:])
        values.append(v[prefix:])
        positions.append(torch.arange(prefix, prefix + new))
        slots.append(seq_slots[prefix:])
        refs.append(_reference(q, k, v, scale, window, chunk, softcap))
    meta = AttentionMetadata(
        [n for _, n in seqs],
        torch.tensor([p + n for p, n in seqs], dtype=torch.int32),
        torch.cat(slots),
        tables,
        BLOCK,
    )
    out = paged_attention(
        torch.cat(queries),
        torch.cat(keys),
        torch.cat(values),
        torch.cat(positions),
        cache,
        meta,
        scale,
        window,
        softcap,
        chunk,
        ops or backend_under_test(),
    )
    return out, torch.cat(refs)


STEPS = {
    "scratch": [(0, 13)],
    "prefix": [(10, 7)],
    "several": [(0, 9), (11, 5), (6, 1), (3, 12)],  # a decode token among prefills too
    # several decode tokens among prefills: those go together on the decode road
    "decoders": [(0, 9), (11, 1), (6, 1), (3, 12), (21, 1)],
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "rule",
    [(None, None), (4, None), (64, None), (None, 8), (None, 64)],
    ids=["causal", "window-cuts", "window-wider", "chunk-cuts", "chunk-wider"],
)
@pytest.mark.parametrize("step", list(STEPS))
def test_prefill_matches_reference(
    step: str, rule: tuple[int | None, int | None], dtype: torch.dtype
) -> None:
    window, chunk = rule
    out, ref = _step(STEPS[step], dtype, window=window, chunk=chunk)
    assert out.dtype == dtype and out.shape == ref.shape
    # bf16: inputs are exact in both, the kernel rounds probabilities and outputs to bf16
    tol = TOL if dtype == torch.float32 else 2e-2
    assert (out.double() - ref).abs().max() <= tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mixed_step_decoders_take_the_kernel_together(
    dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = CpuBackend()
    if not backend.paged:
        pytest.skip("paged kernel unavailable (no C compiler)")
    calls: list[int] = []
    kernel = paged_decode.paged_decode

    def counted(query: torch.Tensor, *args: Any) -> torch.Tensor:
        calls.append(query.shape[0])
        return kernel(query, *args)

    monkeypatch.setattr(paged_decode, "paged_decode", counted)
    out, ref = _step(STEPS["decoders"], dtype, window=6, softcap=3.0, ops=backend)
    assert calls == [3]  # the three one-token sequences, in one call
    tol = TOL if dtype == torch.float32 else 2e-2
    assert (out.double() - ref).abs().max() <= tol


@pytest.mark.parametrize(
    "ops", [REFERENCE, CpuBackend(disabled=("paged",))], ids=["torch", "no-paged"]
)
def test_mixed_step_decoders_without_the_kernel(ops: Ops) -> None:
    """The reference, or the paged kernel switched off (or not built): the one-token
    sequences stay on the per-sequence road and still get their attention."""
    assert not ops.decodes_in_place(
        torch.zeros(1, H, 16), KVCache(*[torch.zeros(1, 4, HKV, 16)] * 2)
    )
    out, ref = _step(STEPS["decoders"], window=6, ops=ops)
    assert (out.double() - ref).abs().max() <= TOL


@pytest.mark.parametrize("dk,dv", [(16, 12), (12, 16)])
def test_prefill_key_and_value_widths_differ(dk: int, dv: int) -> None:
    out, ref = _step(STEPS["decoders"], dk=dk, dv=dv, window=6)
    assert out.shape[-1] == dv
    assert (out.double() - ref).abs().max() <= TOL


@pytest.mark.parametrize("window", [None, 4])
def test_prefill_softcap(window: int | None) -> None:
    out, ref = _step(STEPS["several"], window=window, softcap=2.0)
    assert (out.double() - ref).abs().max() <= TOL


def test_fast_and_masked_roads_agree_in_bf16() -> None:
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(20, H, 32, generator=gen).bfloat16()
    k = torch.randn(50, HKV, 32, generator=gen).bfloat16()
    v = torch.randn(50, HKV, 32, generator=gen).bfloat16()
    pos = torch.arange(30, 50)
    for window in (None, 8):
        fast = prefill_attention(q, k, v, pos, 0.2, window)
        masked = masked_prefill_attention(q, k, v, pos, 0.2, window)
        assert fast.dtype == torch.bfloat16
        assert (fast.float() - masked.float()).abs().max() <= 2e-2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("prefix,window", [(0, None), (40, None), (40, 8)])
def test_prefill_runs_on_the_flash_kernel(
    prefix: int, window: int | None, dtype: torch.dtype
) -> None:
    """The point of the fast road: SDPA's math kernel (scores in memory) is never used."""
    gen = torch.Generator().manual_seed(5)
    q = torch.randn(24, H, 32, generator=gen).to(dtype)
    k = torch.randn(prefix + 24, HKV, 32, generator=gen).to(dtype)
    v = torch.randn(prefix + 24, HKV, 32, generator=gen).to(dtype)
    pos = torch.arange(prefix, prefix + 24)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        prefill_attention(q, k, v, pos, 0.2, window)
    ops = {e.name for e in prof.events()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in ops
    assert "aten::_scaled_dot_product_attention_math" not in ops


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_training_road_equals_the_flash_kernel(dtype: torch.dtype) -> None:
    """A step autograd records (training) attends by matmuls, not the flash kernel, with
    the flash kernel's output and gradients within the dtype's rounding."""
    gen = torch.Generator().manual_seed(7)
    inputs = [torch.randn(40, n, 32, generator=gen).to(dtype) for n in (H, HKV, HKV)]
    grad = torch.randn(40, H, 32, generator=gen).to(dtype)
    q, k, v = (t.clone().requires_grad_(True) for t in inputs)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        out = sdpa_prefill(q, k, v, torch.arange(40), 0.2)
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" not in {
        e.name for e in prof.events()
    }
    out.backward(grad)
    rq, rk, rv = (t.clone().transpose(0, 1)[None].requires_grad_(True) for t in inputs)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        ref = F.scaled_dot_product_attention(rq, rk, rv, is_causal=True, scale=0.2, enable_gqa=True)
    ref.backward(grad.transpose(0, 1)[None])
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    pairs = [(out.detach(), ref.detach()[0].transpose(0, 1))] + [
        (mine.grad, theirs.grad[0].transpose(0, 1))  # type: ignore[index]
        for mine, theirs in ((q, rq), (k, rk), (v, rv))
    ]
    for got, want in pairs:
        assert got is not None
        assert float((got.float() - want.float()).abs().max()) <= tol * max(
            1.0, float(want.abs().max())
        )
