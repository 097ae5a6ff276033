"""Embeddings: a prompt's pooled hidden states (mean over its tokens of the decoder's final,
normed hidden state), L2-normalised. Runs the decoder over a private scratch KV cache, so it
never takes blocks from the generation pool and needs no scheduling. Knows nothing of HTTP.

Mean pooling is what most decoder-as-embedder setups (llama.cpp's default for causal models,
sentence-transformers' default) do; a causal model's last token alone sees everything too,
but is far more sensitive to the prompt's final token."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from hearth.model.batch import AttentionMetadata
from hearth.model.kv_cache import allocate_kv_caches

# tokens per forward: bounds the scratch cache and the activations of one call
MAX_BATCH_TOKENS = 2048


@torch.inference_mode()
def pooled_embeddings(
    model: Any, prompts: Sequence[Sequence[int]], block_size: int = 16
) -> list[list[float]]:
    """One unit-length vector (hidden_size floats) per prompt of token ids. `model` is a
    Decoder (forward over paged K/V, `.config`)."""
    out: list[list[float]] = []
    batch: list[Sequence[int]] = []
    size = 0
    for ids in prompts:
        if batch and size + len(ids) > MAX_BATCH_TOKENS:
            out.extend(_run(model, batch, block_size))
            batch, size = [], 0
        batch.append(ids)
        size += len(ids)
    if batch:
        out.extend(_run(model, batch, block_size))
    return out


def _run(model: Any, prompts: list[Sequence[int]], block_size: int) -> list[list[float]]:
    blocks = [-(-len(p) // block_size) for p in prompts]
    param = next(model.parameters())
    caches = allocate_kv_caches(model.config, sum(blocks), block_size, param.dtype, param.device)
    tables = torch.full((len(prompts), max(blocks)), -1, dtype=torch.int32)
    ids: list[int] = []
    positions: list[int] = []
    slots: list[int] = []
    first = 0
    for i, (prompt, n) in enumerate(zip(prompts, blocks, strict=True)):
        table = list(range(first, first + n))
        first += n
        tables[i, :n] = torch.tensor(table, dtype=torch.int32)
        ids.extend(int(t) for t in prompt)
        positions.extend(range(len(prompt)))
        slots.extend(
            table[p // block_size] * block_size + p % block_size for p in range(len(prompt))
        )
    lens = [len(p) for p in prompts]
    meta = AttentionMetadata(
        query_lens=lens,
        context_lens=torch.tensor(lens, dtype=torch.int32),
        slot_mapping=torch.tensor(slots, dtype=torch.int64, device=param.device),
        block_tables=tables.to(param.device),
        block_size=block_size,
    )
    hidden = model.forward(
        torch.tensor(ids, dtype=torch.int64, device=param.device),
        torch.tensor(positions, dtype=torch.int64, device=param.device),
        meta,
        caches,
    )  # (T, H)
    pooled = torch.stack([h.float().mean(0) for h in hidden.split(lens)])  # (S, H)
    pooled = torch.nn.functional.normalize(pooled, dim=-1)
    return [row.tolist() for row in pooled.cpu()]
