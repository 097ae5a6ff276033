"""Which tensor-parallel sizes a model allows, and how each of its checkpoint tensors is cut
for one rank (Megatron's split, as vLLM's ColumnParallelLinear / RowParallelLinear /
VocabParallelEmbedding do it):

- column-parallel (output rows split): q_proj, k_proj, v_proj (by attention / KV heads,
  biases too), gate_proj, up_proj (by intermediate rows);
- row-parallel (input columns split, one all-reduce after): o_proj, down_proj; their bias
  is added once, after the sum;
- vocab-parallel: embed_tokens and lm_head rows, the vocabulary padded to a multiple of the
  size with zero rows (dropped again after the logits' all-gather);
- everything else (norms, per-head q/k norms) whole on every rank.

Fewer KV heads than ranks (Gemma 3's one KV head over 2 ranks): each rank keeps a copy of
the one KV head its query heads read, as vLLM does (num_kv_head_replicas). Knows nothing
of processes or files."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import torch

from hearth.errors import InvalidParameterError, UnsupportedModelError
from hearth.weights.config import ModelConfig

_COLUMN = re.compile(r"\.(self_attn\.[qkv]_proj|mlp\.(gate|up)_proj)\.(weight|bias)$")
_ROW = re.compile(r"\.(self_attn\.o_proj|mlp\.down_proj)\.weight$")
_VOCAB = ("model.embed_tokens.weight", "lm_head.weight")


def valid_sizes(config: ModelConfig) -> list[int]:
    """Every tensor-parallel size this model splits evenly into: divides the attention
    heads and the MLP's intermediate size, and divides the KV heads or is a multiple of
    them (then KV heads are copied)."""
    if config.mla is not None or config.moe is not None:
        return [1]
    heads, kv = config.num_attention_heads, config.num_key_value_heads
    return [
        n
        for n in range(1, heads + 1)
        if heads % n == 0 and (kv % n == 0 or n % kv == 0) and config.intermediate_size % n == 0
    ]


def check_size(config: ModelConfig, size: int) -> None:
    """InvalidParameterError naming the valid sizes unless `size` splits this model."""
    if size < 1:
        raise InvalidParameterError(
            "tensor_parallel", f"--tensor-parallel must be >= 1, got {size}"
        )
    if size == 1:
        return
    if config.mla is not None or config.moe is not None:
        raise UnsupportedModelError(
            f"tensor parallel runs dense attention + MLP models; this {config.architecture} "
            "model has MLA or mixture-of-experts layers: run it with --tensor-parallel 1"
        )
    if size not in valid_sizes(config):
        raise InvalidParameterError(
            "tensor_parallel",
            f"--tensor-parallel {size} does not split this {config.architecture} model "
            f"({config.num_attention_heads} attention heads, {config.num_key_value_heads} KV "
            f"heads, intermediate size {config.intermediate_size}); valid values: "
            f"{', '.join(map(str, valid_sizes(config)))}",
        )


@dataclass(frozen=True)
class ShardPlan:
    """Rank `rank` of `size`: which rows / columns of each tensor it holds."""

    config: ModelConfig  # the whole model's
    rank: int
    size: int

    def __post_init__(self) -> None:
        check_size(self.config, self.size)
        if not 0 <= self.rank < self.size:
            raise ValueError(f"rank must be in 0..{self.size - 1}, got {self.rank}")

    @property
    def padded_vocab(self) -> int:
        return -(-self.config.vocab_size // self.size) * self.size

    @property
    def vocab_start(self) -> int:
        return self.rank * self.padded_vocab // self.size

    @property
    def kv_heads(self) -> int:
        """KV heads this rank holds (1, a copy, when there are fewer than ranks)."""
        return max(1, self.config.num_key_value_heads // self.size)

    @property
    def first_kv_head(self) -> int:
        kv, n = self.config.num_key_value_heads, self.size
        return self.rank * kv // n if kv >= n else self.rank // (n // kv)

    def shard_config(self) -> ModelConfig:
        """The config of this rank's decoder: its heads, MLP rows and vocabulary rows."""
        c = self.config
        return replace(
            c,
            num_attention_heads=c.num_attention_heads // self.size,
            num_key_value_heads=self.kv_heads,
            intermediate_size=c.intermediate_size // self.size,
            vocab_size=self.padded_vocab // self.size,
        )

    def cut(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """This rank's part of the decoder parameter `name` (HF naming) of the whole
        model's `tensor`."""
        if name in _VOCAB:
            rows = self.padded_vocab // self.size
            part = tensor[self.vocab_start : self.vocab_start + rows]
            if part.shape[0] < rows:  # the last rank's padding: zero rows, zero logits
                pad = tensor.new_zeros(rows - part.shape[0], *tensor.shape[1:])
                part = torch.cat([part, pad])
            return part
        column = _COLUMN.search(name)
        if column:
            proj = column.group(1).rsplit(".", 1)[1]
            start, stop = self._rows(proj)
            return tensor[start:stop]
        row = _ROW.search(name)
        if row:
            proj = row.group(1).rsplit(".", 1)[1]
            start, stop = self._rows("q_proj" if proj == "o_proj" else "gate_proj")
            return tensor[:, start:stop]
        return tensor

    def _rows(self, proj: str) -> tuple[int, int]:
        """[start, stop) of this rank's output rows of a column-parallel projection."""
        c, r, n = self.config, self.rank, self.size
        if proj == "q_proj":
            width = c.num_attention_heads // n * c.head_dim
            return r * width, (r + 1) * width
        if proj in ("k_proj", "v_proj"):
            width = self.kv_heads * c.head_dim
            start = self.first_kv_head * c.head_dim
            return start, start + width
        width = c.intermediate_size // n  # gate_proj, up_proj
        return r * width, (r + 1) * width
