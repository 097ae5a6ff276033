"""DeepSeek-V2/V3 Multi-head Latent Attention: queries through an optional low-rank
bottleneck, keys/values decompressed from a shared normalised latent, plus one rotary key
shared by all heads. The decompressed per-head K/V go to the ordinary paged attention (see
kv_cache.py for why the cache holds them rather than the latent). Knows nothing of files."""

from __future__ import annotations

import torch
from torch import nn

from hearth.model.batch import AttentionMetadata
from hearth.model.kv_cache import KVCache
from hearth.model.layers.attention import DecodeInputs, paged_attention
from hearth.model.layers.linear import make_linear
from hearth.model.layers.norms import RMSNorm
from hearth.model.layers.ops import REFERENCE, Ops
from hearth.model.layers.rope import apply_rope
from hearth.weights.config import ModelConfig


class MLAttention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int, ops: Ops = REFERENCE) -> None:
        super().__init__()
        self.ops = ops
        mla = config.mla
        assert mla is not None
        self.mla = mla
        self.num_heads = h = config.num_attention_heads
        hidden = config.hidden_size
        if mla.q_lora_rank is None:
            self.q_proj = make_linear(hidden, h * mla.qk_head_dim, ops=ops)
        else:
            self.q_a_proj = make_linear(hidden, mla.q_lora_rank, ops=ops)
            self.q_a_layernorm = RMSNorm(mla.q_lora_rank, config.rms_norm_eps, ops=ops)
            self.q_b_proj = make_linear(mla.q_lora_rank, h * mla.qk_head_dim, ops=ops)
        self.kv_a_proj_with_mqa = make_linear(
            hidden, mla.kv_lora_rank + mla.qk_rope_head_dim, ops=ops
        )
        self.kv_a_layernorm = RMSNorm(mla.kv_lora_rank, config.rms_norm_eps, ops=ops)
        self.kv_b_proj = make_linear(
            mla.kv_lora_rank, h * (mla.qk_nope_head_dim + mla.v_head_dim), ops=ops
        )
        self.o_proj = make_linear(h * mla.v_head_dim, hidden, ops=ops)
        self.scale = config.attention_scale or mla.qk_head_dim**-0.5
        self.sliding_window = config.sliding_window if config.is_sliding(layer) else None
        self.interleaved = config.rope_for(layer).interleaved

    def forward(
        self,
        hidden: torch.Tensor,
        positions: torch.Tensor,
        cos_sin: tuple[torch.Tensor, torch.Tensor],
        meta: AttentionMetadata | DecodeInputs,
        cache: KVCache,
    ) -> torch.Tensor:
        """hidden: (T, hidden_size) -> (T, hidden_size)."""
        mla, t, h = self.mla, hidden.shape[0], self.num_heads
        if mla.q_lora_rank is None:
            q = self.q_proj(hidden)
        else:
            q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(hidden)))
        q = q.view(t, h, mla.qk_head_dim)
        q_nope, q_rot = q.split([mla.qk_nope_head_dim, mla.qk_rope_head_dim], dim=-1)
        latent, k_rot = self.kv_a_proj_with_mqa(hidden).split(
            [mla.kv_lora_rank, mla.qk_rope_head_dim], dim=-1
        )
        kv = self.kv_b_proj(self.kv_a_layernorm(latent)).view(t, h, -1)
        k_nope, v = kv.split([mla.qk_nope_head_dim, mla.v_head_dim], dim=-1)
        cos, sin = cos_sin
        q_rot = apply_rope(q_rot, cos, sin, self.interleaved)  # (T, H, rope)
        k_rot = apply_rope(k_rot.view(t, 1, -1), cos, sin, self.interleaved)  # (T, 1, rope)
        q = torch.cat((q_nope, q_rot), dim=-1)
        k = torch.cat((k_nope, k_rot.expand(t, h, -1)), dim=-1)  # (T, H, nope + rope)
        out = paged_attention(
            q,
            k,
            v.contiguous(),
            positions,
            cache,
            meta,
            self.scale,
            self.sliding_window,
            ops=self.ops,
        )  # (T, H, v_head_dim)
        return self.o_proj(out.reshape(t, h * mla.v_head_dim))
