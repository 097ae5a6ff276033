"""The decoder of one pipeline stage: the generic Decoder holding only its stage's run of
layers (stages.py), the first stage also the embedding, the last the final norm and LM head
(and the embedding when the head is tied to it). The rest of the decoder is never loaded:
those parameters stay on the meta device (no memory; any use fails loudly), which keeps
every held parameter under its checkpoint name (`model.layers.17...` on the second stage),
as vLLM's PPMissingLayer placeholders do.

`forward` takes token ids on the first stage and the previous stage's hidden states on the
others, and returns this stage's output: hidden states before the final norm, or after it on
the last stage. Each stage keeps its own KV cache for its layers. Runs the layers' reference
road (plain PyTorch, `Ops()`): the C whole-decode-step is a single-process plan. Knows
nothing of processes, files or requests."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from hearth.errors import CorruptModelError
from hearth.model.batch import AttentionMetadata
from hearth.model.build import checkpoint_sources, fuse_projections
from hearth.model.kv_cache import KVCache, allocate_kv_caches
from hearth.model.layers.attention import DecodeInputs, decode_inputs
from hearth.model.layers.decoder import Decoder, _sequence_lengths
from hearth.model.layers.ops import Ops
from hearth.model.parallel.stages import StagePlan


class StageDecoder(Decoder):
    """A Decoder of which only `plan`'s parts are loaded (see the module docstring)."""

    def __init__(self, plan: StagePlan, ops: Ops) -> None:
        super().__init__(plan.config, ops)
        self.plan = plan

    @property
    def activation_dtype(self) -> torch.dtype:
        """The dtype of the hidden states this stage takes and gives (its weights')."""
        return next(self.model.layers[self.plan.layers[0]].parameters()).dtype

    def forward(
        self,
        inputs: torch.Tensor,
        positions: torch.Tensor,
        meta: AttentionMetadata,
        kv_caches: list[KVCache],
    ) -> torch.Tensor:
        """inputs: (T,) token ids on the first stage, else (T, hidden_size) hidden states;
        positions: (T,); kv_caches: this stage's layers' own -> (T, hidden_size)."""
        config, layers = self.config, self.plan.layers
        hidden = inputs
        if self.plan.is_first:
            hidden = self.model.embed_tokens(inputs)
            if config.embedding_multiplier is not None:
                # Gemma scales in the activation dtype, as Decoder does
                multiplier = torch.tensor(config.embedding_multiplier, dtype=hidden.dtype)
                hidden = hidden * multiplier
        # the per-token lengths Decoder gives its ropes (dynamic NTK scales by them)
        seq_lens = _sequence_lengths(positions, meta.query_lens)
        ropes = {config.rope_for(i) for i in layers}
        tables = {
            rope: self.ropes[rope].cos_sin(positions, seq_lens, hidden.dtype) for rope in ropes
        }
        step_meta: AttentionMetadata | DecodeInputs = meta
        if meta.is_decode_only:
            step_meta = decode_inputs(meta, positions, set(self.mask_keys))
        for cache, i in zip(kv_caches, layers, strict=True):
            hidden = self.model.layers[i](
                hidden, positions, tables[config.rope_for(i)], step_meta, cache
            )
        return self.model.norm(hidden) if self.plan.is_last else hidden

    def allocate_kv_caches(
        self, num_blocks: int, block_size: int, dtype: torch.dtype
    ) -> list[KVCache]:
        """One KVCache per layer of this stage."""
        return allocate_kv_caches(self.plan.cache_config(), num_blocks, block_size, dtype)


def build_stage(
    plan: StagePlan, tensors: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float32
) -> StageDecoder:
    """Stage `plan.rank`'s decoder holding its part of `tensors` (the whole checkpoint, HF
    names, read lazily: only this stage's tensors are read). Raises CorruptModelError naming
    a missing or misshapen tensor, as build_model does."""
    with torch.device("meta"):
        model = StageDecoder(plan, Ops())
    sources = checkpoint_sources(plan.config, tensors)
    state: dict[str, torch.Tensor] = {}
    for name, slot in model.state_dict().items():
        if not plan.holds(name):
            continue
        if name not in sources:
            raise CorruptModelError(
                f"tensor {name} is missing from the checkpoint of this "
                f"{plan.config.architecture} model"
            )
        tensor = sources[name]()
        if tuple(tensor.shape) != tuple(slot.shape):
            raise CorruptModelError(
                f"tensor {name} has shape {tuple(tensor.shape)} but the model expects "
                f"{tuple(slot.shape)}; config.json does not match the weights"
            )
        if tensor.is_floating_point() and tensor.dtype != dtype:
            tensor = tensor.to(dtype)
        state[name] = tensor.contiguous().clone()  # not a view holding the whole tensor
    missing = model.load_state_dict(state, strict=False, assign=True).missing_keys
    assert all(not plan.holds(name) for name in missing), missing
    for param in model.parameters():
        param.requires_grad_(False)
    fused = fuse_projections(model.eval())
    assert isinstance(fused, StageDecoder)
    return fused
