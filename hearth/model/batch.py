"""The flat batch layout the engine hands the model for one step (the contract between
`engine/model_runner.py` and `model/`). vLLM / nano-vllm vocabulary.

One step runs S sequences with T tokens in all: each sequence contributes its next chunk
of prompt (prefill, possibly chunked) or its one newest token (decode). Tokens are laid out
flat, sequence after sequence. Every layer writes this step's K/V into the paged cache at
`slot_mapping`, then attends each query over its sequence's whole cached context
(`block_tables`, `context_lens`), causally. A sequence verifying speculated tokens
(engine/spec/) comes as one group per token, each one token long with the context up to
it: the step stays decode-only, on the decode road."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionMetadata:
    """Where each token of the step lives in the paged KV cache.

    query_lens:   S python ints, tokens of each query group (a sequence's chunk) in this
                  step; sum == T.
    context_lens: (S,) int32, tokens in the cache for each sequence once this step's K/V
                  are written (cached prefix + this step's tokens).
    slot_mapping: (T,) int64, cache slot of each token = block_id * block_size + offset.
    block_tables: (S, max_blocks_per_seq) int32, each sequence's block ids, padded with -1.
    block_size:   tokens per KV block.
    lora_slots:   (T,) int64, the LoRA slot of each token's sequence (-1: the base), or
                  None when no row of the step has an adapter (model/layers/lora_slots.py).
    """

    query_lens: list[int]
    context_lens: torch.Tensor
    slot_mapping: torch.Tensor
    block_tables: torch.Tensor
    block_size: int
    lora_slots: torch.Tensor | None = None

    @property
    def num_tokens(self) -> int:
        return int(sum(self.query_lens))

    @property
    def is_decode_only(self) -> bool:
        return all(q == 1 for q in self.query_lens)
