"""Which pipeline-parallel sizes a model allows and which decoder layers each stage holds.

The split is balanced: every stage gets floor(L / N) of the L decoder layers, and the
L mod N left over go one each to the stages just before the last (vLLM's
`get_pp_indices`): the last stage also holds the final norm and the LM head, the first
the embedding. Stage s holds a contiguous run of layers; the runs cover 0..L-1 in order.
Knows nothing of processes or files."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from hearth.errors import InvalidParameterError
from hearth.weights.config import ModelConfig

_LAYER = re.compile(r"^model\.layers\.(\d+)\.")


def check_stages(config: ModelConfig, size: int) -> None:
    """InvalidParameterError naming the valid sizes unless `size` stages fit this model
    (each stage needs at least one decoder layer)."""
    layers = config.num_hidden_layers
    if not 1 <= size <= layers:
        raise InvalidParameterError(
            "pipeline_parallel",
            f"--pipeline-parallel {size} does not split this {config.architecture} model "
            f"into stages of at least one of its {layers} decoder layers; valid values: "
            f"1 to {layers}",
        )


def stage_layers(num_layers: int, size: int) -> list[range]:
    """The decoder layers of each of `size` stages (see the module docstring)."""
    counts = [num_layers // size] * size
    for i in range(2, num_layers % size + 2):
        counts[-i] += 1
    runs, start = [], 0
    for count in counts:
        runs.append(range(start, start + count))
        start += count
    return runs


@dataclass(frozen=True)
class StagePlan:
    """Stage `rank` of `size`: its layers, and whether it holds the embedding (the first;
    the last too when the LM head is the tied embedding) and the final norm + LM head
    (the last)."""

    config: ModelConfig  # the whole model's
    rank: int
    size: int

    def __post_init__(self) -> None:
        check_stages(self.config, self.size)
        if not 0 <= self.rank < self.size:
            raise ValueError(f"rank must be in 0..{self.size - 1}, got {self.rank}")

    @property
    def layers(self) -> range:
        return stage_layers(self.config.num_hidden_layers, self.size)[self.rank]

    @property
    def is_first(self) -> bool:
        return self.rank == 0

    @property
    def is_last(self) -> bool:
        return self.rank == self.size - 1

    @property
    def holds_embedding(self) -> bool:
        return self.is_first or (self.is_last and self.config.tie_word_embeddings)

    def holds(self, name: str) -> bool:
        """Whether the decoder parameter `name` (HF naming) lives on this stage."""
        layer = _LAYER.match(name)
        if layer:
            return int(layer.group(1)) in self.layers
        if name.startswith("model.embed_tokens."):
            return self.holds_embedding
        return self.is_last  # model.norm, lm_head

    def cache_config(self) -> ModelConfig:
        """The config of this stage's layers alone (what its KV cache is sized and laid
        out by): its layer count and its layers' entries of the per-layer tuples."""
        return stage_cache_config(self.config, self.layers)


def stage_cache_config(config: ModelConfig, layers: range) -> ModelConfig:
    """`config` cut to `layers` for KV-cache sizing and allocation."""
    cut = slice(layers.start, layers.stop)
    return replace(
        config,
        num_hidden_layers=len(layers),
        layer_types=config.layer_types[cut],
        no_rope_layers=config.no_rope_layers[cut],
        moe_layers=config.moe_layers[cut],
    )
