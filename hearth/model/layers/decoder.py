"""The one generic decoder: embeddings, N identical-in-shape layers (attention or MLA, then a
gated MLP or sparse MoE, with pre-norms and Gemma's sandwich norms), final norm and LM head.
Every family difference comes from ModelConfig. Parameters carry HF checkpoint names
(`model.layers.N.self_attn.q_proj.weight`, ...) so loading is 1:1 (see build.py).

Input is a flat token batch with positions and paged-attention metadata (batch.py), the
layout the engine feeds; the decoder knows nothing of files, requests or sampling.

Decode-only steps share one set of attention inputs across the layers (attention.DecodeInputs).
Where the builder found that the backend's whole-step road fits this model (build.py
`plan_decode_step`), such a step is one backend call instead of ~15 per layer; the layers
below stay the reference it must equal. The decoder knows nothing of kernels: every fast
operation is its Ops'."""

from __future__ import annotations

import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hearth.model.batch import AttentionMetadata
from hearth.model.kv_cache import KVCache
from hearth.model.layers.attention import DecodeInputs, MaskKey, decode_inputs
from hearth.model.layers.attention_layer import Attention
from hearth.model.layers.linear import make_linear
from hearth.model.layers.lora_slots import LoraSlots
from hearth.model.layers.mla import MLAttention
from hearth.model.layers.mlp import GatedMLP
from hearth.model.layers.moe import SparseMoE
from hearth.model.layers.norms import RMSNorm
from hearth.model.layers.ops import REFERENCE, Ops
from hearth.model.layers.rope import RotaryEmbedding
from hearth.weights.config import ModelConfig, RopeConfig


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, layer: int, ops: Ops = REFERENCE) -> None:
        super().__init__()
        hidden, eps, offset = config.hidden_size, config.rms_norm_eps, config.norm_unit_offset
        self.self_attn: nn.Module = (
            MLAttention(config, layer, ops) if config.mla else Attention(config, layer, ops)
        )
        self.mlp: nn.Module
        act, bias = config.hidden_act, config.mlp_bias
        if config.is_moe(layer):
            assert config.moe is not None
            self.mlp = SparseMoE(config.moe, hidden, act, bias, ops)
        else:
            self.mlp = GatedMLP(hidden, config.intermediate_size, act, bias, ops)
        self.input_layernorm = RMSNorm(hidden, eps, offset, ops)
        # Llama's post_attention_layernorm is the MLP's pre-norm; Gemma 2/3 also norm the
        # attention output with it and wrap the MLP in pre/post feed-forward norms
        self.post_attention_layernorm = RMSNorm(hidden, eps, offset, ops)
        self.sandwich_norm = config.sandwich_norm
        if config.sandwich_norm:
            self.pre_feedforward_layernorm = RMSNorm(hidden, eps, offset, ops)
            self.post_feedforward_layernorm = RMSNorm(hidden, eps, offset, ops)

    def forward(
        self,
        hidden: torch.Tensor,
        positions: torch.Tensor,
        cos_sin: tuple[torch.Tensor, torch.Tensor],
        meta: AttentionMetadata | DecodeInputs,
        cache: KVCache,
    ) -> torch.Tensor:
        attn = self.self_attn(self.input_layernorm(hidden), positions, cos_sin, meta, cache)
        if self.sandwich_norm:
            hidden = hidden + self.post_attention_layernorm(attn)
            mlp = self.mlp(self.pre_feedforward_layernorm(hidden))
            return hidden + self.post_feedforward_layernorm(mlp)
        hidden = hidden + attn
        return hidden + self.mlp(self.post_attention_layernorm(hidden))


class Embedding(nn.Module):
    def __init__(self, vocab_size: int, hidden_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size), requires_grad=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)


class DecoderBody(nn.Module):
    """`model.*` in HF checkpoints."""

    def __init__(self, config: ModelConfig, ops: Ops = REFERENCE) -> None:
        super().__init__()
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            DecoderLayer(config, i, ops) for i in range(config.num_hidden_layers)
        )
        eps, offset = config.rms_norm_eps, config.norm_unit_offset
        self.norm = RMSNorm(config.hidden_size, eps, offset, ops)


class Decoder(nn.Module):
    """ops: the backend every layer asks for its fast operations (the reference by
    default). `plans_decode_step`: set by the builder (build.py) when the backend's
    whole-step road fits what it built."""

    def __init__(self, config: ModelConfig, ops: Ops = REFERENCE) -> None:
        super().__init__()
        self.config = config
        self.ops = ops
        self.model = DecoderBody(config, ops)
        self.lm_head = (
            None
            if config.tie_word_embeddings
            else make_linear(config.hidden_size, config.vocab_size, ops=ops)
        )
        # one table per distinct rope (Gemma 3: global and local), shared by its layers
        self.ropes: dict[RopeConfig, RotaryEmbedding] = {}
        for i in range(config.num_hidden_layers):
            rope = config.rope_for(i)
            self.ropes.setdefault(rope, RotaryEmbedding(rope))
        # the distinct (sliding window, chunk) masks a decode step builds once for all layers
        self.mask_keys: list[MaskKey] = sorted(
            {
                (config.sliding_window if config.is_sliding(i) else None, config.chunk_for(i))
                for i in range(config.num_hidden_layers)
            },
            key=repr,
        )
        self.plans_decode_step = False
        # the LoRA slots once an adapter was loaded (lora_slots.py; the engine makes them)
        self.adapters: LoraSlots | None = None
        # the whole-step road's plan for one set of KV caches, made at the first decode-only
        # step that brings them (the plan holds their addresses)
        self._step_plan: Any = None
        self._step_planned_for: list[weakref.ref[KVCache]] | None = None

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttentionMetadata,
        kv_caches: list[KVCache],
    ) -> torch.Tensor:
        """input_ids, positions: (T,) -> hidden states (T, hidden_size) after the final norm.
        A step with adapter rows (meta.lora_slots) adds each row's update to every
        projection its adapter targets, on whichever road runs the step."""
        if meta.lora_slots is not None:
            assert self.adapters is not None, "a step names LoRA slots but none are loaded"
            with self.adapters.rows(meta.lora_slots):
                return self._forward(input_ids, positions, meta, kv_caches)
        return self._forward(input_ids, positions, meta, kv_caches)

    def forward_first_layers(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttentionMetadata,
        kv_caches: list[KVCache],
        num_layers: int,
    ) -> torch.Tensor:
        """The first `num_layers` layers, then the final norm: an early exit (the draft of
        self-speculation, engine/spec/). kv_caches: those layers' caches only. Runs the
        layers one by one: the whole-step road is planned for every layer."""
        if not 1 <= num_layers <= len(self.model.layers):
            raise ValueError(
                f"num_layers must be in 1..{len(self.model.layers)}, got {num_layers}"
            )
        return self._forward(input_ids, positions, meta, kv_caches, num_layers)

    def _forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttentionMetadata,
        kv_caches: list[KVCache],
        num_layers: int | None = None,
    ) -> torch.Tensor:
        hidden = self.model.embed_tokens(input_ids)
        if self.config.embedding_multiplier is not None:
            # Gemma scales in the activation dtype (sqrt(hidden) rounded like the weights)
            hidden = hidden * torch.tensor(self.config.embedding_multiplier, dtype=hidden.dtype)
        seq_lens = _sequence_lengths(positions, meta.query_lens)
        tables = {
            rope: emb.cos_sin(positions, seq_lens, hidden.dtype) for rope, emb in self.ropes.items()
        }
        step_meta: AttentionMetadata | DecodeInputs = meta
        if meta.is_decode_only:
            step_meta = decode_inputs(meta, positions, set(self.mask_keys))
            # an early exit (num_layers) runs the layers: the plan covers all of them
            whole = self.plans_decode_step and num_layers is None
            plan = self._plan_step(kv_caches) if whole else None
            if plan is not None:
                lora = None
                if meta.lora_slots is not None:
                    assert self.adapters is not None
                    lora = (self.adapters, meta.lora_slots)
                out = self.ops.decode_step(plan, hidden, list(tables.values()), step_meta, lora)
                if out is not None:
                    return out
        layers = self.model.layers if num_layers is None else self.model.layers[:num_layers]
        for i, layer in enumerate(layers):
            cos_sin = tables[self.config.rope_for(i)]
            hidden = layer(hidden, positions, cos_sin, step_meta, kv_caches[i])
        return self.model.norm(hidden)

    def _plan_step(self, kv_caches: list[KVCache]) -> Any:
        """The backend's whole-step plan for these caches (made once per set of caches), or
        None when they do not fit it."""
        planned = self._step_planned_for
        if (
            planned is not None
            and len(planned) == len(kv_caches)
            and all(ref() is cache for ref, cache in zip(planned, kv_caches, strict=True))
        ):
            return self._step_plan
        self._step_plan = self.ops.plan_decode_step(self, kv_caches)
        # weakly: holding the caches would keep a dropped engine's KV pool resident
        self._step_planned_for = [weakref.ref(cache) for cache in kv_caches]
        return self._step_plan

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: (N, hidden_size) -> (N, vocab_size) float32, soft-capped when configured."""
        if self.lm_head is None:
            logits = self.ops.linear(hidden, self.model.embed_tokens.weight)
        else:
            logits = self.lm_head(hidden)
        logits = logits.float()
        cap = self.config.final_logit_softcapping
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits


def _sequence_lengths(positions: torch.Tensor, query_lens: list[int]) -> torch.Tensor:
    """(T,) for each token, its sequence's last position in this step + 1 (the length rope
    types like dynamic NTK scale by)."""
    lens = torch.tensor(query_lens, device=positions.device)
    ends = torch.cumsum(lens, 0) - 1
    return torch.repeat_interleave(positions[ends] + 1, lens)
