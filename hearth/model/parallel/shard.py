"""The decoder of one tensor-parallel rank: the generic Decoder built with the rank's shard
config (its heads, MLP rows, vocabulary rows; plan.py), whose o_proj and down_proj sum their
partial products over the group (row-parallel, one all-reduce each), whose embedding looks
up only its vocabulary rows (zeros elsewhere, then an all-reduce) and whose logits are
all-gathered. Every rank runs the same forward on the same step; each holds its own KV
cache of its KV heads.

Runs the layers' reference road (plain PyTorch, `Ops()`): the C whole-decode-step is a
single-process plan. Knows nothing of processes, files or requests."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from hearth.errors import CorruptModelError
from hearth.model.build import checkpoint_sources, fuse_projections
from hearth.model.layers.attention_layer import Attention
from hearth.model.layers.decoder import Decoder, Embedding
from hearth.model.layers.linear import Linear
from hearth.model.layers.mlp import GatedMLP
from hearth.model.layers.ops import Ops
from hearth.model.parallel.group import TPGroup
from hearth.model.parallel.plan import ShardPlan


class RowParallelLinear(Linear):
    """weight: (out_features, in_features / size), this rank's input columns. The partial
    products are summed over the group; the bias (whole) is added once, after the sum."""

    def __init__(self, base: Linear, group: TPGroup) -> None:
        super().__init__(base.in_features, base.out_features, base.bias is not None, base.ops)
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.group.all_reduce(self.ops.linear(x, self.weight))
        return out if self.bias is None else out + self.bias


class VocabParallelEmbedding(Embedding):
    """weight: (padded_vocab / size, hidden), rows [start, start + rows) of the vocabulary.
    Ids outside look up row 0 and are zeroed; the all-reduce fills them in from their rank."""

    def __init__(self, rows: int, hidden_size: int, start: int, group: TPGroup) -> None:
        super().__init__(rows, hidden_size)
        self.start = start
        self.group = group

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        local = ids - self.start
        outside = (local < 0) | (local >= self.weight.shape[0])
        out = F.embedding(local.masked_fill(outside, 0), self.weight)
        out = out.masked_fill(outside[:, None], 0.0)
        return self.group.all_reduce(out)


class ShardDecoder(Decoder):
    """A Decoder whose logits are gathered over the group: (N, hidden) -> (N, vocab_size)
    float32 on every rank, equal to the single-process model's up to summation order."""

    def __init__(self, plan: ShardPlan, group: TPGroup, ops: Ops) -> None:
        super().__init__(plan.shard_config(), ops)
        self.vocab_size = plan.config.vocab_size
        self.group = group
        hidden = plan.config.hidden_size
        rows = plan.padded_vocab // plan.size
        self.model.embed_tokens = VocabParallelEmbedding(rows, hidden, plan.vocab_start, group)
        for layer in self.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            assert isinstance(attn, Attention) and isinstance(mlp, GatedMLP)
            assert isinstance(attn.o_proj, Linear) and isinstance(mlp.down_proj, Linear)
            attn.o_proj = RowParallelLinear(attn.o_proj, group)
            mlp.down_proj = RowParallelLinear(mlp.down_proj, group)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.lm_head is None:
            local = self.ops.linear(hidden, self.model.embed_tokens.weight)
        else:
            local = self.lm_head(hidden)
        logits = self.group.all_gather_last(local.float())[:, : self.vocab_size]
        cap = self.config.final_logit_softcapping
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits


def build_shard(
    plan: ShardPlan,
    tensors: Mapping[str, torch.Tensor],
    group: TPGroup,
    dtype: torch.dtype = torch.float32,
) -> ShardDecoder:
    """Rank `plan.rank`'s decoder holding its cut of `tensors` (the whole checkpoint, HF
    names, read lazily: each tensor is read, cut and dropped). Raises CorruptModelError
    naming a missing or misshapen tensor, as build_model does."""
    with torch.device("meta"):
        model = ShardDecoder(plan, group, Ops())
    sources = checkpoint_sources(plan.config, tensors)
    state: dict[str, torch.Tensor] = {}
    for name, slot in model.state_dict().items():
        if name not in sources:
            raise CorruptModelError(
                f"tensor {name} is missing from the checkpoint of this "
                f"{plan.config.architecture} model"
            )
        tensor = plan.cut(name, sources[name]())
        if tuple(tensor.shape) != tuple(slot.shape):
            raise CorruptModelError(
                f"tensor {name} cut for rank {plan.rank} of {plan.size} has shape "
                f"{tuple(tensor.shape)} but the shard expects {tuple(slot.shape)}; config.json "
                "does not match the weights"
            )
        if tensor.is_floating_point() and tensor.dtype != dtype:
            tensor = tensor.to(dtype)
        state[name] = tensor.contiguous().clone()  # not a view holding the whole tensor
    model.load_state_dict(state, strict=True, assign=True)
    for param in model.parameters():
        param.requires_grad_(False)
    fused = fuse_projections(model.eval())
    assert isinstance(fused, ShardDecoder)
    return fused
