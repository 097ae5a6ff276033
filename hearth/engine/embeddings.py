"""Embeddings: a prompt's pooled hidden states (mean over its tokens of the decoder's final,
normed hidden state), L2-normalised. Runs the decoder over a private scratch KV cache, so it
never takes blocks from the generation pool. Knows nothing of HTTP.

An `EmbeddingJob` is one call's prompts cut into forwards of at most `chunk_tokens` tokens
(several short prompts packed into one forward, a long prompt split over several, its K/V
kept in its own scratch cache in between), so whoever runs the engine can interleave the
job with generation steps: a chat streams on while a large embed call is computed.

Mean pooling is what most decoder-as-embedder setups (llama.cpp's default for causal models,
sentence-transformers' default) do; a causal model's last token alone sees everything too,
but is far more sensitive to the prompt's final token."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from hearth.model.batch import AttentionMetadata
from hearth.model.kv_cache import allocate_kv_caches

# tokens per forward when the caller gives no budget: bounds the scratch cache and the
# activations of one forward
MAX_BATCH_TOKENS = 2048


class EmbeddingJob:
    """The prompts (token ids) of one embedding call, computed `chunk_tokens` at a time by
    `run_chunk`; `vectors` holds one unit-length vector per prompt once `done`."""

    def __init__(
        self, prompts: Sequence[Sequence[int]], block_size: int = 16, chunk_tokens: int = 512
    ) -> None:
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
        self.prompts = [list(p) for p in prompts]
        self.block_size = block_size
        self.chunk_tokens = chunk_tokens
        self.vectors: list[list[float]] = []
        self._next = 0  # the first prompt not pooled yet
        self._done_tokens = 0  # of prompts[_next], when it is split over forwards
        self._sum: torch.Tensor | None = None  # its hidden states summed so far (H,)
        self._caches: Any = None  # its scratch K/V while it is split

    @property
    def done(self) -> bool:
        return self._next >= len(self.prompts)

    @torch.inference_mode()
    def run_chunk(self, model: Any, threads: Callable[[int], None] | None = None) -> int:
        """One forward of at most chunk_tokens tokens (a prompt longer than that goes in
        pieces). `threads(num_tokens)` sets the thread count first. Returns the tokens run."""
        assert not self.done
        first = self.prompts[self._next]
        if self._done_tokens == 0 and len(first) <= self.chunk_tokens:
            group: list[list[int]] = []
            size = 0
            while self._next < len(self.prompts):
                ids = self.prompts[self._next]
                if group and size + len(ids) > self.chunk_tokens:
                    break
                if len(ids) > self.chunk_tokens:
                    break
                group.append(ids)
                size += len(ids)
                self._next += 1
            if threads is not None:
                threads(size)
            self.vectors.extend(_run(model, group, self.block_size))
            return size
        return self._run_piece(model, first, threads)

    def _run_piece(
        self, model: Any, prompt: list[int], threads: Callable[[int], None] | None
    ) -> int:
        start = self._done_tokens
        end = min(len(prompt), start + self.chunk_tokens)
        bs = self.block_size
        num_blocks = -(-len(prompt) // bs)
        param = next(model.parameters())
        if self._caches is None:
            self._caches = allocate_kv_caches(
                model.config, num_blocks, bs, param.dtype, param.device
            )
        table = torch.arange(num_blocks, dtype=torch.int32)[None, :]
        meta = AttentionMetadata(
            query_lens=[end - start],
            context_lens=torch.tensor([end], dtype=torch.int32),
            slot_mapping=torch.arange(start, end, dtype=torch.int64, device=param.device),
            block_tables=table.to(param.device),
            block_size=bs,
        )
        if threads is not None:
            threads(end - start)
        hidden = model.forward(
            torch.tensor(prompt[start:end], dtype=torch.int64, device=param.device),
            torch.arange(start, end, dtype=torch.int64, device=param.device),
            meta,
            self._caches,
        )  # (end - start, H)
        part = hidden.float().sum(0)
        self._sum = part if self._sum is None else self._sum + part
        self._done_tokens = end
        if end == len(prompt):
            pooled = torch.nn.functional.normalize(self._sum / len(prompt), dim=-1)
            self.vectors.append(pooled.cpu().tolist())
            self._next += 1
            self._done_tokens, self._sum, self._caches = 0, None, None
        return end - start


def pooled_embeddings(
    model: Any, prompts: Sequence[Sequence[int]], block_size: int = 16
) -> list[list[float]]:
    """One unit-length vector (hidden_size floats) per prompt of token ids, all at once.
    `model` is a Decoder (forward over paged K/V, `.config`)."""
    job = EmbeddingJob(prompts, block_size, MAX_BATCH_TOKENS)
    while not job.done:
        job.run_chunk(model)
    return job.vectors


def _run(model: Any, prompts: list[list[int]], block_size: int) -> list[list[float]]:
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
