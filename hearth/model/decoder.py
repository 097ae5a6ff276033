"""The one generic decoder: embeddings, N identical-in-shape layers (attention or MLA, then a
gated MLP or sparse MoE, with pre-norms and Gemma's sandwich norms), final norm and LM head.
Every family difference comes from ModelConfig. Parameters carry HF checkpoint names
(`model.layers.N.self_attn.q_proj.weight`, ...) so loading is 1:1 (see build.py).

Input is a flat token batch with positions and paged-attention metadata (batch.py), the
layout the engine feeds; the decoder knows nothing of files, requests or sampling.

Decode-only steps run the layers on tensors only (attention.DecodeInputs), which
`compile_decode()` hands to torch.compile: one graph per step instead of ~40 eager ops per
layer, each paying Python dispatch and a thread-pool wake-up on CPU."""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hearth.model import cpu_linear, decode_step, lowbit_kernel, paged_kernel
from hearth.model.attention import DecodeInputs, MaskKey, decode_inputs
from hearth.model.attention_layer import Attention
from hearth.model.batch import AttentionMetadata
from hearth.model.kv_cache import KVCache
from hearth.model.linear import make_linear
from hearth.model.mla import MLAttention
from hearth.model.mlp import GatedMLP
from hearth.model.moe import SparseMoE
from hearth.model.norms import RMSNorm
from hearth.model.rope import RotaryEmbedding
from hearth.weights.config import ModelConfig, RopeConfig


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        hidden, eps, offset = config.hidden_size, config.rms_norm_eps, config.norm_unit_offset
        self.self_attn: nn.Module = (
            MLAttention(config, layer) if config.mla else Attention(config, layer)
        )
        self.mlp: nn.Module
        if config.is_moe(layer):
            assert config.moe is not None
            self.mlp = SparseMoE(config.moe, hidden, config.hidden_act, config.mlp_bias)
        else:
            self.mlp = GatedMLP(
                hidden, config.intermediate_size, config.hidden_act, config.mlp_bias
            )
        self.input_layernorm = RMSNorm(hidden, eps, offset)
        # Llama's post_attention_layernorm is the MLP's pre-norm; Gemma 2/3 also norm the
        # attention output with it and wrap the MLP in pre/post feed-forward norms
        self.post_attention_layernorm = RMSNorm(hidden, eps, offset)
        self.sandwich_norm = config.sandwich_norm
        if config.sandwich_norm:
            self.pre_feedforward_layernorm = RMSNorm(hidden, eps, offset)
            self.post_feedforward_layernorm = RMSNorm(hidden, eps, offset)

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

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            DecoderLayer(config, i) for i in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, config.norm_unit_offset)


class Decoder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.model = DecoderBody(config)
        self.lm_head = (
            None
            if config.tie_word_embeddings
            else make_linear(config.hidden_size, config.vocab_size)
        )
        # one table per distinct rope (Gemma 3: global and local), shared by its layers
        self._ropes: dict[RopeConfig, RotaryEmbedding] = {}
        for i in range(config.num_hidden_layers):
            rope = config.rope_for(i)
            self._ropes.setdefault(rope, RotaryEmbedding(rope))
        # the distinct (sliding window, chunk) masks a decode step builds once for all layers
        self._mask_keys: set[MaskKey] = {
            (config.sliding_window if config.is_sliding(i) else None, config.chunk_for(i))
            for i in range(config.num_hidden_layers)
        }
        self._decode_layers: Callable[..., torch.Tensor] = self._run_decode_layers
        # the whole-step C road (decode_step.py), planned at the first decode-only step for
        # the caches it gets; off once the step is compiled
        self._step_plan: decode_step.StepPlan | None = None
        self._step_planned_for: list[weakref.ref[KVCache]] | None = None
        self._compiled = False

    def compile_decode(self) -> None:
        """Run decode-only steps through torch.compile (inductor; needs a C++ compiler).
        The first step of each new shape class compiles (tens of seconds on 2 cores);
        prefill steps stay eager."""
        if paged_kernel.available():
            paged_kernel.compiled_op()  # registered before tracing reaches it
        if lowbit_kernel.available():
            lowbit_kernel.compiled_ops()
        compiled = torch.compile(self._run_decode_layers, dynamic=True, fullgraph=True)
        self._decode_layers = compiled
        self._compiled = True

    def _run_decode_layers(
        self,
        hidden: torch.Tensor,
        positions: torch.Tensor,
        cos_sins: list[tuple[torch.Tensor, torch.Tensor]],
        slot_mapping: torch.Tensor,
        blocks: torch.Tensor,
        masks: dict[MaskKey, torch.Tensor],
        starts: dict[MaskKey, torch.Tensor],
        ends: torch.Tensor,
        kv_caches: list[KVCache],
    ) -> torch.Tensor:
        """The layers of a decode-only step, on tensors only. hidden: (S, hidden_size)."""
        inputs = DecodeInputs(slot_mapping, blocks, masks, starts, ends)
        for i, layer in enumerate(self.model.layers):
            hidden = layer(hidden, positions, cos_sins[i], inputs, kv_caches[i])
        return self.model.norm(hidden)

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttentionMetadata,
        kv_caches: list[KVCache],
    ) -> torch.Tensor:
        """input_ids, positions: (T,) -> hidden states (T, hidden_size) after the final norm."""
        hidden = self.model.embed_tokens(input_ids)
        if self.config.embedding_multiplier is not None:
            # Gemma scales in the activation dtype (sqrt(hidden) rounded like the weights)
            hidden = hidden * torch.tensor(self.config.embedding_multiplier, dtype=hidden.dtype)
        seq_lens = _sequence_lengths(positions, meta.query_lens)
        tables = {
            rope: emb.cos_sin(positions, seq_lens, hidden.dtype)
            for rope, emb in self._ropes.items()
        }
        if meta.is_decode_only:
            inputs = decode_inputs(meta, positions, self._mask_keys)
            plan = None if self._compiled else self._plan_step(kv_caches)
            if plan is not None:
                out = decode_step.step(plan, hidden, list(tables.values()), inputs)
                if out is not None:
                    return out
            cos_sins = [tables[self.config.rope_for(i)] for i in range(len(self.model.layers))]
            return self._decode_layers(
                hidden,
                positions,
                cos_sins,
                inputs.slot_mapping,
                inputs.blocks,
                inputs.masks,
                inputs.starts,
                inputs.ends,
                kv_caches,
            )
        for i, layer in enumerate(self.model.layers):
            cos_sin = tables[self.config.rope_for(i)]
            hidden = layer(hidden, positions, cos_sin, meta, kv_caches[i])
        return self.model.norm(hidden)

    def _plan_step(self, kv_caches: list[KVCache]) -> decode_step.StepPlan | None:
        """The C step's plan for these caches (made once per set of caches), or None when
        this model does not fit it."""
        planned = self._step_planned_for
        if (
            planned is not None
            and len(planned) == len(kv_caches)
            and all(ref() is cache for ref, cache in zip(planned, kv_caches, strict=True))
        ):
            return self._step_plan
        ropes = list(self._ropes)
        rope_index = [ropes.index(self.config.rope_for(i)) for i in range(len(self.model.layers))]
        self._step_plan = decode_step.plan(
            self.model.layers, self.model.norm, kv_caches, rope_index, list(self._mask_keys)
        )
        # weakly: holding the caches would keep a dropped engine's KV pool resident
        self._step_planned_for = [weakref.ref(cache) for cache in kv_caches]
        return self._step_plan

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: (N, hidden_size) -> (N, vocab_size) float32, soft-capped when configured."""
        if self.lm_head is None:
            logits = cpu_linear.linear(hidden, self.model.embed_tokens.weight)
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
