"""Portable paged attention in plain PyTorch (runs on CPU; nothing assumes CUDA): each query
attends over its sequence's cached context, gathered block by block through the block
table, causally by absolute position, with GQA/MQA, sliding windows, chunked attention
(Llama 4), logit soft-capping and any scale. Knows nothing of projections, rope or families.

Positions: the cache slot of a sequence's token j holds the K/V of position j, so a key's
position is its index in the gathered context.

Prefill and mixed steps attend sequence by sequence on SDPA's CPU flash kernel
(`prefill_attention`: no (H, L, C) scores in memory), or the backend's causal prefill where
no window or chunk cuts the context; soft-capping, which SDPA cannot do, takes the
explicit-mask road (`masked_prefill_attention`). The one-token (decoding) sequences of a
mixed step go together on the decode road below when the backend reads caches in place.

Decode-only steps (every sequence brings one token) take a faster road: the gather indices
and masks are computed once per step (`decode_inputs`) and shared by all layers. The
backend's `paged_decode` attends (the CPU backend's kernel reads each sequence's cached K/V
in place; the reference gathers the blocks into a padded copy for SDPA,
`gathered_decode`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hearth.model.batch import AttentionMetadata
from hearth.model.kv_cache import KVCache
from hearth.model.layers.ops import REFERENCE, Ops
from hearth.model.layers.training_attention import causal_training_attention


def _gather(cache: torch.Tensor, blocks: torch.Tensor, length: int) -> torch.Tensor:
    """(num_blocks, block_size, H, D) cache, (B,) block ids -> (length, H, D) context."""
    # index_select copies whole blocks; cache[blocks] measured 3x slower on CPU
    return cache.index_select(0, blocks).flatten(0, 1)[:length]


def _attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    allowed: torch.Tensor,
    scale: float,
    softcap: float | None,
) -> torch.Tensor:
    """q: (..., Hkv, Q, D) where Q stacks the query heads sharing a KV head; k, v: (...,
    Hkv, C, D); allowed: bool broadcastable to (..., Hkv, Q, C). Returns (..., Hkv, Q, Dv)."""
    if softcap is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)
    # soft-capping bends the scores before softmax, which SDPA cannot do
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    scores = torch.tanh(scores / softcap) * softcap
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.matmul(probs, v)


def _mask(
    q_pos: torch.Tensor, k_pos: torch.Tensor, sliding_window: int | None, chunk: int | None = None
) -> torch.Tensor:  # (..., Q, C) bool: causal, within the window / chunk when there is one
    diff = q_pos[..., :, None] - k_pos[..., None, :]
    allowed = diff >= 0
    if sliding_window is not None:
        allowed &= diff < sliding_window
    if chunk is not None:  # chunked attention: only keys in the query's own chunk
        allowed &= (q_pos[..., :, None] // chunk) == (k_pos[..., None, :] // chunk)
    return allowed


MaskKey = tuple[int | None, int | None]  # (sliding window, attention chunk) of a layer


@dataclass
class DecodeInputs:
    """A decode-only step's attention inputs, computed once and shared by every layer.

    slot_mapping: (S,) int64, where each sequence's new K/V goes.
    blocks:       (S, B) int64, block tables cut to the longest context, padding -> block 0
                  (masked off).
    masks:        (sliding window, chunk) (None: none) -> (S, 1, 1, C) bool, C = B *
                  block_size: key j is visible to sequence s (inside its context, its
                  window and its chunk).
    starts, ends: the same rule as key ranges (the CPU backend's kernel): sequence s
                  sees keys [starts[key][s], ends[s]), (S,) int64."""

    slot_mapping: torch.Tensor
    blocks: torch.Tensor
    masks: dict[MaskKey, torch.Tensor]
    starts: dict[MaskKey, torch.Tensor]
    ends: torch.Tensor


def decode_inputs(
    meta: AttentionMetadata, positions: torch.Tensor, windows: set[MaskKey]
) -> DecodeInputs:
    """The DecodeInputs of a decode-only step; positions: (S,), windows: the layers'
    distinct (sliding window, chunk) pairs."""
    context_lens = meta.context_lens.to(positions.device).long()
    max_blocks = -(-int(context_lens.max()) // meta.block_size)
    blocks = meta.block_tables[:, :max_blocks].to(positions.device).long().clamp(min=0)
    k_pos = torch.arange(max_blocks * meta.block_size, device=positions.device)
    # one query per sequence: its visible keys are one range, [start, end), where end is
    # causal and inside the context, and start follows the window and the chunk; the
    # masks are those ranges laid over the gathered keys
    ends = torch.minimum(context_lens, positions + 1)
    before_end = k_pos[None, :] < ends[:, None]  # (S, C)
    masks = {}
    starts = {}
    zero = torch.zeros_like(positions)
    for window, chunk in windows:
        start = zero if window is None else (positions - window + 1).clamp(min=0)
        if chunk is not None:  # the query's own chunk begins at a multiple of chunk
            start = torch.maximum(start, positions - positions % chunk)
        starts[window, chunk] = start
        masks[window, chunk] = (before_end & (k_pos[None, :] >= start[:, None]))[:, None, None, :]
    return DecodeInputs(meta.slot_mapping.to(positions.device), blocks, masks, starts, ends)


def decode_attention(
    query: torch.Tensor,
    key: torch.Tensor | None,
    value: torch.Tensor | None,
    cache: KVCache,
    inputs: DecodeInputs,
    scale: float,
    sliding_window: int | None = None,
    softcap: float | None = None,
    chunk: int | None = None,
    ops: Ops = REFERENCE,
) -> torch.Tensor:
    """One new token per sequence: write its K/V, then attend over each context
    (ops.paged_decode). query: (S, H, Dk); key/value: (S, Hkv, D), or None when the caller
    has written them already. Returns (S, H, Dv)."""
    if key is not None and value is not None:
        cache.write(inputs.slot_mapping, key, value)
    return ops.paged_decode(query, cache, inputs, scale, sliding_window, softcap, chunk)


def gathered_decode(
    query: torch.Tensor,
    cache: KVCache,
    inputs: DecodeInputs,
    scale: float,
    sliding_window: int | None = None,
    softcap: float | None = None,
    chunk: int | None = None,
) -> torch.Tensor:
    """The reference decode attention: each context gathered through the block table in
    one indexing op into a padded copy, then SDPA under the step's masks. query: (S, H, Dk)
    -> (S, H, Dv)."""
    num_seqs, num_heads, _ = query.shape
    num_kv_heads = cache.key.shape[2]
    flat_blocks = inputs.blocks.flatten()
    context = inputs.blocks.shape[1] * cache.block_size
    shape = (num_seqs, context, num_kv_heads, -1)
    k = _gather(cache.key, flat_blocks, num_seqs * context).view(shape)
    v = _gather(cache.value, flat_blocks, num_seqs * context).view(shape)
    k, v = k.transpose(1, 2), v.transpose(1, 2)  # (S, Hkv, C, Dk), (S, Hkv, C, Dv)
    q = query.view(num_seqs, num_kv_heads, num_heads // num_kv_heads, -1)  # (S, Hkv, g, Dk)
    o = _attend(q, k, v, inputs.masks[sliding_window, chunk], scale, softcap)  # (S, Hkv, g, Dv)
    return o.reshape(num_seqs, num_heads, -1)


def paged_attention(
    query: torch.Tensor,
    key: torch.Tensor | None,
    value: torch.Tensor | None,
    positions: torch.Tensor,
    cache: KVCache,
    meta: AttentionMetadata | DecodeInputs,
    scale: float,
    sliding_window: int | None = None,
    softcap: float | None = None,
    chunk: int | None = None,
    ops: Ops = REFERENCE,
) -> torch.Tensor:
    """Write this step's K/V into `cache`, then attend (chunk: Llama 4 chunked attention).

    query: (T, H, Dk); key: (T, Hkv, Dk); value: (T, Hkv, Dv), or both None when the caller
    has written them already (ops.rope_cache); positions: (T,). Returns (T, H, Dv)."""
    if isinstance(meta, DecodeInputs):
        return decode_attention(
            query, key, value, cache, meta, scale, sliding_window, softcap, chunk, ops
        )
    if meta.is_decode_only:  # the decode road, with its inputs built for this layer alone
        inputs = decode_inputs(meta, positions, {(sliding_window, chunk)})
        return decode_attention(
            query, key, value, cache, inputs, scale, sliding_window, softcap, chunk, ops
        )
    if key is not None and value is not None:
        cache.write(meta.slot_mapping, key, value)
    num_tokens, num_heads, _ = query.shape
    out = query.new_empty(num_tokens, num_heads, cache.value.shape[-1])
    singles = [i for i, n in enumerate(meta.query_lens) if n == 1]
    done: set[int] = set()
    if len(singles) > 1 and ops.decodes_in_place(query, cache):
        # the decoding sequences of a mixed step, all at once on the decode road (the
        # backend reads their caches in place): one by one below, each gathered its
        # context and ran SDPA with a mask, ~19 ms a sequence over SmolLM2's 30 layers
        # at 1,000 tokens against ~2.5 ms in a decode step
        _attend_singles(query, positions, cache, meta, singles, out, scale, sliding_window,
                        softcap, chunk, ops)  # fmt: skip
        done = set(singles)
    start = 0
    # one sequence at a time: the gather and the kernel call cost far more than the loop
    for i, length in enumerate(meta.query_lens):
        end = start + length
        if i in done:
            start = end
            continue
        context = int(meta.context_lens[i])
        num_blocks = -(-context // meta.block_size)
        blocks = meta.block_tables[i, :num_blocks].long()
        k = _gather(cache.key, blocks, context)  # (C, Hkv, Dk)
        v = _gather(cache.value, blocks, context)  # (C, Hkv, Dv)
        rule = (sliding_window, chunk)
        if softcap is None:
            o = prefill_attention(
                query[start:end], k, v, positions[start:end], scale, *rule, ops=ops
            )
        else:
            o = masked_prefill_attention(
                query[start:end], k, v, positions[start:end], scale, *rule, softcap=softcap
            )
        out[start:end] = o
        start = end
    return out


def _attend_singles(
    query: torch.Tensor,
    positions: torch.Tensor,
    cache: KVCache,
    meta: AttentionMetadata,
    singles: list[int],
    out: torch.Tensor,
    scale: float,
    sliding_window: int | None,
    softcap: float | None,
    chunk: int | None,
    ops: Ops,
) -> None:
    """out[rows] = the attention of the one-token sequences `singles` of a mixed step (their
    K/V already in `cache`), through decode_attention."""
    offsets = [0]
    for n in meta.query_lens:
        offsets.append(offsets[-1] + n)
    rows = torch.tensor([offsets[i] for i in singles], dtype=torch.int64)
    index = torch.tensor(singles, dtype=torch.int64)
    sub = AttentionMetadata(
        query_lens=[1] * len(singles),
        context_lens=meta.context_lens.index_select(0, index),
        slot_mapping=meta.slot_mapping.index_select(0, rows),
        block_tables=meta.block_tables.index_select(0, index),
        block_size=meta.block_size,
    )
    rule = (sliding_window, chunk)
    inputs = decode_inputs(sub, positions.index_select(0, rows), {rule})
    q = query.index_select(0, rows)
    o = decode_attention(q, None, None, cache, inputs, scale, sliding_window, softcap, chunk, ops)
    out.index_copy_(0, rows, o)


def prefill_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    positions: torch.Tensor,
    scale: float,
    sliding_window: int | None = None,
    chunk: int | None = None,
    ops: Ops = REFERENCE,
) -> torch.Tensor:
    """One sequence's queries over its whole context: the backend's causal prefill where no
    window or chunk cuts the context, else `sdpa_prefill`. query: (L, H, Dk) at
    `positions` (L,), the last L positions of the context; key: (C, Hkv, Dk); value: (C,
    Hkv, Dv). Returns (L, H, Dv)."""
    context = key.shape[0]
    uncut = (sliding_window is None or context <= sliding_window) and (
        chunk is None or context <= chunk
    )
    if uncut:
        return ops.causal_prefill(query, key, value, positions, scale)
    return sdpa_prefill(query, key, value, positions, scale, sliding_window, chunk)


def sdpa_prefill(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    positions: torch.Tensor,
    scale: float,
    sliding_window: int | None = None,
    chunk: int | None = None,
) -> torch.Tensor:
    """One sequence's queries over its whole context on SDPA's CPU flash kernel (no scores
    materialized, GQA in the kernel). query: (L, H, Dk) at `positions` (L,), the last L
    positions of the context; key: (C, Hkv, Dk); value: (C, Hkv, Dv). Returns (L, H, Dv).

    From scratch (L == C) and no window / chunk that cuts the context: plain `is_causal`.
    Otherwise (cached prefix, a cutting window or chunk) the kernel takes the bool mask
    from `_mask`: on CPU the flash kernel handles a mask too (4-D inputs only; 3-D ones
    fall back to the math kernel) and skips little with `is_causal`: splitting the prefix
    off and merging by log-sum-exp measured ~5% faster, and less exact in bf16 (the two
    partial outputs round before the merge), so it is not done."""
    length, context = query.shape[0], key.shape[0]
    dk, dv = query.shape[-1], value.shape[-1]
    uncut = (sliding_window is None or context <= sliding_window) and (
        chunk is None or context <= chunk
    )
    if length == context and uncut and _trains(query, key, value, context):
        return causal_training_attention(query, key, value, scale)
    q = query.transpose(0, 1)[None]  # (1, H, L, Dk)
    k = key.transpose(0, 1)[None]  # (1, Hkv, C, Dk)
    v = value.transpose(0, 1)[None]  # (1, Hkv, C, Dv)
    if dv < dk:  # MLA: the flash kernel wants one head width; zero value columns add nothing
        v = F.pad(v, (0, dk - dv))
    elif dk < dv:  # zero query/key columns leave every score as it was (scale is explicit)
        q, k = F.pad(q, (0, dv - dk)), F.pad(k, (0, dv - dk))
    if length == context and uncut:
        o = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, scale=scale, enable_gqa=True
        )  # (1, H, L, D)
    else:
        k_pos = torch.arange(context, device=query.device)
        allowed = _mask(positions, k_pos, sliding_window, chunk)  # (L, C)
        o = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, scale=scale, enable_gqa=True
        )  # (1, H, L, D)
    return o[0, :, :, :dv].transpose(0, 1)  # (L, H, Dv)


# A training step (autograd records) of a short sequence attends by blocked matmuls with
# a hand-written backward (training_attention.py): SDPA's CPU flash kernel, forward and
# backward, measured 1.6x slower on SmolLM2's 512-token blocks in bf16. That road keeps
# its (H, L, C) probabilities for backward, so only up to this many a layer (16 MB in
# float32); longer sequences keep the flash kernel's memory.
_MAX_TRAINING_SCORES = 1 << 22


def _trains(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, context: int) -> bool:
    records = torch.is_grad_enabled() and (
        query.requires_grad or key.requires_grad or value.requires_grad
    )
    return records and query.shape[0] * query.shape[1] * context <= _MAX_TRAINING_SCORES


def masked_prefill_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    positions: torch.Tensor,
    scale: float,
    sliding_window: int | None = None,
    chunk: int | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """The explicit-mask road (materialized (Hkv, group * L, C) scores): what soft-capping
    needs, and the reference the fast road is tested against. Same shapes as
    `prefill_attention`."""
    length, num_heads, _ = query.shape
    num_kv_heads = key.shape[1]
    group = num_heads // num_kv_heads
    k = key.transpose(0, 1)  # (Hkv, C, Dk)
    v = value.transpose(0, 1)  # (Hkv, C, Dv)
    # (L, H, D) -> (Hkv, group * L, D): query heads that share a KV head side by side
    q = query.view(length, num_kv_heads, group, -1).permute(1, 2, 0, 3)
    q = q.reshape(num_kv_heads, group * length, -1)
    k_pos = torch.arange(key.shape[0], device=query.device)
    allowed = _mask(positions, k_pos, sliding_window, chunk).repeat(group, 1)
    o = _attend(q, k, v, allowed, scale, softcap)  # (Hkv, group * L, Dv)
    o = o.view(num_kv_heads, group, length, -1).permute(2, 0, 1, 3)
    return o.reshape(length, num_heads, -1)
