"""llama.cpp tensor names → Hugging Face checkpoint names, per GGUF architecture.

The HF names are those a family's `save_pretrained` checkpoint holds (per-expert MoE
weights, Mixtral's `block_sparse_moe.experts.E.w1/w2/w3`, Phi-3's fused `qkv_proj` /
`gate_up_proj`), so GGUF and safetensors files reach the decoder under the same names.
Knows names only: the value transforms (Q/K un-permutation, Gemma's norm offset, expert
splitting) are applied by gguf.py.
"""

from __future__ import annotations

import re

__all__ = ["CONFIG_TENSORS", "EXPERTS", "hf_name"]

# Tensors that carry configuration (read by gguf_config.py), not weights of the network.
CONFIG_TENSORS = frozenset(
    {"rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight"}
)

# Marks an HF name that takes the expert index: a stacked `*_exps` GGUF tensor is split.
EXPERTS = "{expert}"

_GLOBAL = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}

_BLOCK = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_qkv": "self_attn.qkv_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    # sparse MoE (Qwen-MoE, DeepSeek)
    "ffn_gate_inp": "mlp.gate",
    "ffn_gate_exps": f"mlp.experts.{EXPERTS}.gate_proj",
    "ffn_up_exps": f"mlp.experts.{EXPERTS}.up_proj",
    "ffn_down_exps": f"mlp.experts.{EXPERTS}.down_proj",
    "ffn_gate_shexp": "mlp.shared_expert.gate_proj",
    "ffn_up_shexp": "mlp.shared_expert.up_proj",
    "ffn_down_shexp": "mlp.shared_expert.down_proj",
    "ffn_gate_inp_shexp": "mlp.shared_expert_gate",
    # DeepSeek MLA and V3 routing bias
    "attn_q_a": "self_attn.q_a_proj",
    "attn_q_a_norm": "self_attn.q_a_layernorm",
    "attn_q_b": "self_attn.q_b_proj",
    "attn_kv_a_mqa": "self_attn.kv_a_proj_with_mqa",
    "attn_kv_a_norm": "self_attn.kv_a_layernorm",
    "attn_kv_b": "self_attn.kv_b_proj",
    "exp_probs_b": "mlp.gate.e_score_correction_bias",
}

# Per-architecture differences from _BLOCK.
_OVERRIDES: dict[str, dict[str, str]] = {
    # Mixtral (GGUF architecture `llama` with experts)
    "mixtral": {
        "ffn_gate_inp": "block_sparse_moe.gate",
        "ffn_gate_exps": f"block_sparse_moe.experts.{EXPERTS}.w1",
        "ffn_down_exps": f"block_sparse_moe.experts.{EXPERTS}.w2",
        "ffn_up_exps": f"block_sparse_moe.experts.{EXPERTS}.w3",
    },
    # Gemma 2/3 sandwich norms: llama.cpp's ffn_norm is HF's pre-feedforward norm
    "gemma2": {
        "ffn_norm": "pre_feedforward_layernorm",
        "post_attention_norm": "post_attention_layernorm",
        "post_ffw_norm": "post_feedforward_layernorm",
    },
    # Phi-3 keeps gate and up fused in ffn_up
    "phi3": {"ffn_up": "mlp.gate_up_proj"},
    "deepseek2": {
        "ffn_gate_shexp": "mlp.shared_experts.gate_proj",
        "ffn_up_shexp": "mlp.shared_experts.up_proj",
        "ffn_down_shexp": "mlp.shared_experts.down_proj",
    },
}
_OVERRIDES["gemma3"] = _OVERRIDES["gemma2"]
# Llama 4's ungated shared expert; its routed experts and router take the decoder's names
# (its safetensors hold them fused, see model/build.py)
_OVERRIDES["llama4"] = _OVERRIDES["deepseek2"]

# HF parameters without a .weight/.bias suffix: llama.cpp's converter renames DeepSeek-V3's
# `e_score_correction_bias` to `e_score_correction.bias`, so files hold `exp_probs_b.bias`.
_BARE = frozenset({"exp_probs_b"})

_BLOCK_RE = re.compile(r"blk\.(\d+)\.([a-z0-9_]+?)(?:\.(\d+))?\.(weight|bias)")
_GLOBAL_RE = re.compile(r"([a-z_]+)\.(weight|bias)")


def hf_name(flavour: str, gguf_name: str) -> str | None:
    """The HF checkpoint name of GGUF tensor `gguf_name` in a file of `flavour` (a GGUF
    architecture, or "mixtral" for llama files with experts), or None when unknown.

    Stacked expert tensors map to a name containing EXPERTS (to be formatted per expert);
    llama.cpp's old per-expert Mixtral tensors (`blk.N.ffn_gate.E.weight`) map directly.
    """
    table = {**_BLOCK, **_OVERRIDES.get(flavour, {})}
    if m := _BLOCK_RE.fullmatch(gguf_name):
        layer, part, expert, kind = m.groups()
        if expert is not None:  # old Mixtral layout: one tensor per expert
            stacked = table.get(f"{part}_exps")
            if stacked is None:
                return None
            return f"model.layers.{layer}.{stacked.format(expert=expert)}.{kind}"
        target = table.get(part)
        if target is None:
            return None
        return f"model.layers.{layer}.{target}" + ("" if part in _BARE else f".{kind}")
    if m := _GLOBAL_RE.fullmatch(gguf_name):
        part, kind = m.groups()
        target = _GLOBAL.get(part)
        return None if target is None else f"{target}.{kind}"
    return None
