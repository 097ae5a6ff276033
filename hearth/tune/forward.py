"""The training forward: blocks of examples through the one decoder, as the engine runs it.
Every example is its own sequence in the flat batch layout (model/batch.py): positions from
0, causal attention within the example only, K/V written to a scratch paged cache that lives
for this step (so packing never attends across examples). The loss is cross-entropy on the
trained tokens only, over the vocabulary in chunks: at most `chunk` rows of float32 logits
exist at a time, forward and backward. A frozen plain head (LoRA, QLoRA, DPO) takes the
fused road of loss.py (logits once, the hidden states' gradient in the same pass); a head
that trains (full fine-tune) or is not a plain matrix recomputes each chunk's logits in
backward (torch.utils.checkpoint). Knows nothing of optimizers or files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from hearth.model.batch import AttentionMetadata
from hearth.model.kv_cache import KVCache
from hearth.model.layers.linear import Linear
from hearth.model.layers.lora import dense_weight
from hearth.model.layers.quant import Int4Linear, Int8Linear
from hearth.tune.loss import linear_cross_entropy
from hearth.tune.packing import Block
from hearth.tune.tokenize import TokenizedExample

if TYPE_CHECKING:
    from hearth.model.layers.decoder import Decoder

__all__ = ["FlatBatch", "flatten", "sequence_logprobs", "token_losses"]

_BLOCK = 16  # tokens per scratch KV block


@dataclass(frozen=True)
class FlatBatch:
    """input_ids, positions: (T,); targets: (T,) the next token (-100 where not trained);
    lengths: tokens per example."""

    input_ids: torch.Tensor
    positions: torch.Tensor
    targets: torch.Tensor
    lengths: list[int]

    @property
    def num_trained(self) -> int:
        return int((self.targets != -100).sum())


def flatten(examples: list[TokenizedExample]) -> FlatBatch:
    ids: list[int] = []
    positions: list[int] = []
    targets: list[int] = []
    for ex in examples:
        ids.extend(ex.ids)
        positions.extend(range(len(ex)))
        # position t predicts token t + 1 where that token is trained
        targets.extend(t if on else -100 for t, on in zip(ex.ids[1:], ex.trained[1:], strict=True))
        targets.append(-100)
    return FlatBatch(
        torch.tensor(ids, dtype=torch.long),
        torch.tensor(positions, dtype=torch.long),
        torch.tensor(targets, dtype=torch.long),
        [len(ex) for ex in examples],
    )


def blocks_examples(blocks: list[Block]) -> list[TokenizedExample]:
    return [ex for block in blocks for ex in block.examples]


def hidden_states(model: Decoder, batch: FlatBatch) -> torch.Tensor:
    """(T, hidden_size) final-normed hidden states, every example attending to itself only."""
    config = model.config
    starts: list[int] = []
    num_blocks = 0
    for length in batch.lengths:
        starts.append(num_blocks)
        num_blocks += -(-length // _BLOCK)
    width = max(-(-n // _BLOCK) for n in batch.lengths)
    tables = torch.full((len(batch.lengths), width), -1, dtype=torch.int32)
    slots: list[torch.Tensor] = []
    for i, (start, length) in enumerate(zip(starts, batch.lengths, strict=True)):
        count = -(-length // _BLOCK)
        tables[i, :count] = torch.arange(start, start + count, dtype=torch.int32)
        slots.append(torch.arange(length) + start * _BLOCK)
    meta = AttentionMetadata(
        query_lens=list(batch.lengths),
        context_lens=torch.tensor(batch.lengths, dtype=torch.int32),
        slot_mapping=torch.cat(slots),
        block_tables=tables,
        block_size=_BLOCK,
    )
    dtype = model.model.norm.weight.dtype  # the activations' (a quantized model's are bf16)
    heads, dk, dv = config.num_kv_cache_heads, config.k_head_dim, config.v_head_dim
    caches = [
        KVCache(
            torch.zeros(num_blocks, _BLOCK, heads, dk, dtype=dtype),
            torch.zeros(num_blocks, _BLOCK, heads, dv, dtype=dtype),
        )
        for _ in range(config.num_hidden_layers)
    ]
    return model(batch.input_ids, batch.positions, meta, caches)


def _frozen_head(model: Decoder) -> torch.Tensor | None:
    """The LM head's (vocab, hidden) weight when the fused loss can run it: a matrix with no
    bias that does not train (tied to the embeddings, a plain Linear, or a quantized head
    de-quantized for this step), else None."""
    head = model.lm_head
    weight: torch.Tensor
    if head is None:
        weight = model.model.embed_tokens.weight
    elif getattr(head, "bias", None) is None and (
        type(head) is Linear or isinstance(head, Int4Linear | Int8Linear)
    ):
        weight = dense_weight(head)
    else:
        return None
    return None if weight.requires_grad else weight


def trained_token_losses(model: Decoder, batch: FlatBatch, chunk: int = 1024) -> torch.Tensor:
    """(num_trained,) float32: each trained token's cross-entropy, in the batch's order."""
    hidden = hidden_states(model, batch)
    rows = (batch.targets != -100).nonzero().squeeze(1)
    h, t = hidden.index_select(0, rows), batch.targets.index_select(0, rows)
    weight = _frozen_head(model)
    if weight is not None:
        return linear_cross_entropy(h, weight, t, model.config.final_logit_softcapping, chunk)
    parts = []
    for start in range(0, rows.numel(), chunk):
        args = (model, h[start : start + chunk], t[start : start + chunk])
        if torch.is_grad_enabled():
            parts.append(checkpoint(_token_ce, *args, use_reentrant=False))
        else:
            parts.append(_token_ce(*args))
    return torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)


def token_losses(model: Decoder, batch: FlatBatch, chunk: int = 1024) -> torch.Tensor:
    """Sum of the trained tokens' cross-entropy (float32 scalar)."""
    return trained_token_losses(model, batch, chunk).sum()


def sequence_logprobs(model: Decoder, batch: FlatBatch, chunk: int = 1024) -> torch.Tensor:
    """(num_examples,) the summed log-probability of each example's trained tokens (DPO)."""
    rows = (batch.targets != -100).nonzero().squeeze(1)
    owner = torch.repeat_interleave(
        torch.arange(len(batch.lengths)), torch.tensor(batch.lengths)
    ).index_select(0, rows)
    values = -trained_token_losses(model, batch, chunk)
    return torch.zeros(len(batch.lengths), dtype=torch.float32).index_add(0, owner, values)


def _token_ce(model: Decoder, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = model.compute_logits(hidden)  # (n, vocab) float32
    return F.cross_entropy(logits, targets, reduction="none")
