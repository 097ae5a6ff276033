"""Run token sequences through a Decoder without the engine: a fixed set of sequences, each
with its own KV blocks, fed in chunks of any size (one prefill, chunked prefill,
token-by-token decode, or several sequences in one flat batch). A test helper (the tests'
way to drive a Decoder step by step); the engine lays out its own batches. Knows nothing of sampling beyond
greedy argmax."""

from __future__ import annotations

import torch

from hearth.model.batch import AttentionMetadata
from hearth.model.kv_cache import allocate_kv_caches
from hearth.model.layers.decoder import Decoder


class SequenceRunner:
    """num_seqs sequences of up to max_len tokens. Blocks are dealt round-robin (sequence i
    gets blocks i, i + num_seqs, ...) so every sequence's context spans scattered blocks."""

    def __init__(self, model: Decoder, num_seqs: int, max_len: int, block_size: int = 16) -> None:
        if num_seqs <= 0 or max_len <= 0:
            raise ValueError("num_seqs and max_len must be > 0")
        self.model = model
        self.block_size = block_size
        blocks_per_seq = -(-max_len // block_size)
        self.max_len = blocks_per_seq * block_size
        param = model.model.norm.weight  # the activation dtype (embeddings may be int8)
        self.caches = allocate_kv_caches(
            model.config, num_seqs * blocks_per_seq, block_size, param.dtype, param.device
        )
        ids = torch.arange(num_seqs * blocks_per_seq, dtype=torch.int32)
        self.block_tables = ids.view(blocks_per_seq, num_seqs).t().contiguous()  # (S, B)
        self.lengths = [0] * num_seqs
        self.device = param.device

    @torch.inference_mode()
    def step(self, chunks: list[tuple[int, list[int]]]) -> list[torch.Tensor]:
        """Feed each (sequence index, new token ids) as one flat batch; returns each chunk's
        logits, (len(chunk), vocab) float32."""
        ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        for seq, tokens in chunks:
            start = self.lengths[seq]
            if start + len(tokens) > self.max_len:
                raise ValueError(f"sequence {seq} would exceed max_len {self.max_len}")
            for pos in range(start, start + len(tokens)):
                block = int(self.block_tables[seq, pos // self.block_size])
                slots.append(block * self.block_size + pos % self.block_size)
                positions.append(pos)
            ids.extend(tokens)
            self.lengths[seq] = start + len(tokens)
        order = [seq for seq, _ in chunks]
        meta = AttentionMetadata(
            query_lens=[len(tokens) for _, tokens in chunks],
            context_lens=torch.tensor([self.lengths[s] for s in order], dtype=torch.int32),
            slot_mapping=torch.tensor(slots, dtype=torch.int64, device=self.device),
            block_tables=self.block_tables[order].to(self.device),
            block_size=self.block_size,
        )
        token_pos = torch.tensor(positions, dtype=torch.int64, device=self.device)
        hidden = self.model(torch.tensor(ids, device=self.device), token_pos, meta, self.caches)
        logits = self.model.compute_logits(hidden)
        return list(logits.split(meta.query_lens))


def greedy_generate(model: Decoder, prompt: list[int], max_new_tokens: int) -> list[int]:
    """Greedy continuation of one prompt (prefill, then one token per step)."""
    runner = SequenceRunner(model, 1, len(prompt) + max_new_tokens)
    logits = runner.step([(0, prompt)])[0]
    out: list[int] = []
    for _ in range(max_new_tokens):
        out.append(int(logits[-1].argmax()))
        if len(out) == max_new_tokens:
            break
        logits = runner.step([(0, out[-1:])])[0]
    return out
