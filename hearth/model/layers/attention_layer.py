"""The multi-head attention block of the non-MLA families: q/k/v projections (optional
biases), optional per-head q/k RMSNorm, rope (skipped on Llama 4's NoPE layers), Llama 4's
weightless q/k norm after rope and query temperature on NoPE layers, paged attention (full,
sliding or chunked), output projection. GQA/MQA come from num_key_value_heads. q/k/v may
be fused into one `qkv_proj` (rows q, then k, then v) by `fuse_qkv`: one matmul instead of
three per step. Knows nothing of files, requests or kernels (it asks its Ops)."""

from __future__ import annotations

import torch
from torch import nn

from hearth.model.batch import AttentionMetadata
from hearth.model.kv_cache import KVCache
from hearth.model.layers.attention import DecodeInputs, paged_attention
from hearth.model.layers.linear import make_linear
from hearth.model.layers.norms import RMSNorm, rms_normalize
from hearth.model.layers.ops import REFERENCE, Ops
from hearth.model.layers.rope import apply_rope
from hearth.weights.config import ModelConfig


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int, ops: Ops = REFERENCE) -> None:
        super().__init__()
        self.ops = ops
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = d = config.head_dim
        hidden = config.hidden_size
        self.q_proj = make_linear(hidden, self.num_heads * d, config.qkv_bias, ops)
        self.k_proj = make_linear(hidden, self.num_kv_heads * d, config.qkv_bias, ops)
        self.v_proj = make_linear(hidden, self.num_kv_heads * d, config.qkv_bias, ops)
        self.o_proj = make_linear(self.num_heads * d, hidden, config.o_bias, ops)
        self.qkv_proj: nn.Module | None = None
        self._qkv_sizes = [self.num_heads * d, self.num_kv_heads * d, self.num_kv_heads * d]
        if config.qk_norm:
            self.q_norm = RMSNorm(d, config.rms_norm_eps, config.norm_unit_offset, ops)
            self.k_norm = RMSNorm(d, config.rms_norm_eps, config.norm_unit_offset, ops)
        self.qk_norm = config.qk_norm
        self.scale = config.attention_scale or d**-0.5
        self.sliding_window = config.sliding_window if config.is_sliding(layer) else None
        self.chunk = config.chunk_for(layer)
        self.softcap = config.attn_logit_softcapping
        self.interleaved = config.rope_for(layer).interleaved
        self.use_rope = config.uses_rope(layer)
        self.l2_eps = config.rms_norm_eps if config.qk_l2_norm and self.use_rope else None
        self.temperature: tuple[float, float] | None = None
        if config.attn_temperature_tuning and not self.use_rope:
            self.temperature = (config.attn_temperature_floor_scale, config.attn_temperature_scale)
        # the plain rope layer (no q/k norms, halves rotated, equal k/v head sizes): with
        # fused q/k/v, rope and the cache write are one op (ops.rope_cache)
        self.plain_rope = (
            self.use_rope
            and not self.qk_norm
            and not self.interleaved
            and self.l2_eps is None
            and self.temperature is None
        )

    def forward(
        self,
        hidden: torch.Tensor,
        positions: torch.Tensor,
        cos_sin: tuple[torch.Tensor, torch.Tensor],
        meta: AttentionMetadata | DecodeInputs,
        cache: KVCache,
    ) -> torch.Tensor:
        """hidden: (T, hidden_size) -> (T, hidden_size)."""
        num_tokens = hidden.shape[0]
        qkv = None if self.qkv_proj is None else self.qkv_proj(hidden)
        window, softcap, chunk = self.sliding_window, self.softcap, self.chunk
        if qkv is not None and self.plain_rope:
            # what _heads does here, and k and v written into the cache, in one op
            q = self.ops.rope_cache(qkv, *cos_sin, cache, meta.slot_mapping, self.num_heads)
            out = paged_attention(
                q, None, None, positions, cache, meta, self.scale, window, softcap, chunk,
                self.ops,
            )  # fmt: skip
        else:
            q, k, v = self._heads(hidden, qkv, positions, cos_sin)
            out = paged_attention(
                q, k, v, positions, cache, meta, self.scale, window, softcap, chunk, self.ops
            )
        # out: (T, H, D)
        return self.o_proj(out.reshape(num_tokens, self.num_heads * self.head_dim))

    def _heads(
        self,
        hidden: torch.Tensor,
        qkv: torch.Tensor | None,
        positions: torch.Tensor,
        cos_sin: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (T, H, D), k and v (T, Hkv, D) from the projections, after the q/k norms,
        rope and query temperature this layer has. qkv: the fused projection's output."""
        num_tokens = hidden.shape[0]
        if qkv is not None:
            q, k, v = qkv.split(self._qkv_sizes, dim=-1)
        else:
            q, k, v = self.q_proj(hidden), self.k_proj(hidden), self.v_proj(hidden)
        q = q.view(num_tokens, self.num_heads, self.head_dim)
        k = k.view(num_tokens, self.num_kv_heads, self.head_dim)
        v = v.view(num_tokens, self.num_kv_heads, self.head_dim)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.use_rope:
            cos, sin = cos_sin
            q = apply_rope(q, cos, sin, self.interleaved)
            k = apply_rope(k, cos, sin, self.interleaved)
        if self.l2_eps is not None:
            q, k = rms_normalize(q, self.l2_eps), rms_normalize(k, self.l2_eps)
        if self.temperature is not None:
            floor_scale, scale = self.temperature
            q = (q * query_temperature(positions, floor_scale, scale)[:, None, None]).to(q.dtype)
        return q, k, v

    def fuse_qkv(self, qkv_proj: nn.Module) -> None:
        """Replace q/k/v_proj by one projection whose output rows are q, then k, then v."""
        self.qkv_proj = qkv_proj
        del self.q_proj, self.k_proj, self.v_proj


def query_temperature(positions: torch.Tensor, floor_scale: float, scale: float) -> torch.Tensor:
    """(T,) float32 query multipliers of Llama 4's NoPE layers: 1 up to position floor_scale - 2,
    then growing with log(position / floor_scale), so attention over a long context without
    positional signal does not flatten out."""
    steps = torch.floor((positions.float() + 1.0) / floor_scale)
    return torch.log1p(steps) * scale + 1.0
