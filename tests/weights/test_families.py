"""config_from_hf: HF config.json dicts of every family become ModelConfigs; fields we
cannot honour are refused by name, never dropped."""

from __future__ import annotations

import math
from typing import Any

import pytest

from hearth.errors import UnsupportedModelError
from hearth.weights.families import SUPPORTED_MODEL_TYPES, config_from_hf

LLAMA: dict[str, Any] = {
    "model_type": "llama",
    "vocab_size": 128,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "rope_theta": 500000.0,
    "eos_token_id": [1, 7],
}


def test_unknown_model_type_lists_supported() -> None:
    with pytest.raises(UnsupportedModelError) as err:
        config_from_hf({**LLAMA, "model_type": "mamba"})
    assert "'mamba'" in str(err.value)
    assert all(name in str(err.value) for name in SUPPORTED_MODEL_TYPES)


def test_unknown_rope_type_names_the_field() -> None:
    raw = {**LLAMA, "rope_scaling": {"rope_type": "ntk-by-parts", "factor": 2.0}}
    with pytest.raises(UnsupportedModelError, match=r"rope_scaling\.rope_type='ntk-by-parts'"):
        config_from_hf(raw)
    raw = {**LLAMA, "rope_parameters": {"rope_type": "mrope", "rope_theta": 1e4}}
    with pytest.raises(UnsupportedModelError, match=r"rope_parameters\.rope_type"):
        config_from_hf(raw)


def test_unknown_rope_key_names_the_field() -> None:
    raw = {**LLAMA, "rope_scaling": {"type": "linear", "factor": 2.0, "mrope_section": [1]}}
    with pytest.raises(UnsupportedModelError, match=r"rope_scaling\.mrope_section"):
        config_from_hf(raw)


def test_other_unhonourable_fields_are_named() -> None:
    with pytest.raises(UnsupportedModelError, match="hidden_act='relu2'"):
        config_from_hf({**LLAMA, "hidden_act": "relu2"})
    with pytest.raises(UnsupportedModelError, match="use_bidirectional_attention"):
        config_from_hf({**LLAMA, "model_type": "gemma3_text", "use_bidirectional_attention": True})
    with pytest.raises(UnsupportedModelError, match="'num_hidden_layers'"):
        config_from_hf({k: v for k, v in LLAMA.items() if k != "num_hidden_layers"})


def test_llama3_rope_from_old_style_config() -> None:
    raw = {
        **LLAMA,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    }
    cfg = config_from_hf(raw)
    assert (cfg.rope.type, cfg.rope.theta, cfg.rope.factor) == ("llama3", 500000.0, 32.0)
    assert cfg.rope.original_max_position_embeddings == 8192
    assert cfg.head_dim == 8 and cfg.eos_token_ids == (1, 7) and not cfg.tie_word_embeddings


def test_gemma3_old_style_config_gets_local_rope_and_pattern() -> None:
    raw = {
        **LLAMA,
        "model_type": "gemma3_text",
        "num_hidden_layers": 7,
        "head_dim": 32,
        "rope_theta": 1e6,
        "rope_local_base_freq": 1e4,
        "sliding_window": 512,
        "sliding_window_pattern": 6,
        "query_pre_attn_scalar": 256,
        "rope_scaling": {"rope_type": "linear", "factor": 8.0},
    }
    cfg = config_from_hf(raw)
    assert cfg.layer_types == ("sliding_attention",) * 5 + ("full_attention", "sliding_attention")
    assert cfg.rope_for(5).type == "linear" and cfg.rope_for(5).theta == 1e6
    assert cfg.rope_for(0).type == "default" and cfg.rope_for(0).theta == 1e4
    assert cfg.norm_unit_offset and cfg.qk_norm and cfg.sandwich_norm and cfg.tie_word_embeddings
    assert cfg.attention_scale == 256**-0.5
    assert cfg.embedding_multiplier == math.sqrt(64) and cfg.hidden_act == "gelu_tanh"


def test_qwen2_sliding_only_when_enabled() -> None:
    raw = {**LLAMA, "model_type": "qwen2", "sliding_window": 32, "max_window_layers": 2}
    cfg = config_from_hf({**raw, "use_sliding_window": False})
    assert cfg.sliding_window is None and cfg.qkv_bias and not cfg.o_bias
    cfg = config_from_hf({**raw, "use_sliding_window": True})
    assert cfg.layer_types == ("full_attention",) * 2 + ("sliding_attention",) * 2


def test_deepseek_v3_routing_and_mla() -> None:
    raw = {
        **LLAMA,
        "model_type": "deepseek_v3",
        "num_key_value_heads": 8,
        "q_lora_rank": 24,
        "kv_lora_rank": 16,
        "qk_nope_head_dim": 8,
        "qk_rope_head_dim": 4,
        "v_head_dim": 8,
        "n_routed_experts": 8,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 16,
        "n_shared_experts": 2,
        "n_group": 4,
        "topk_group": 2,
        "first_k_dense_replace": 1,
        "norm_topk_prob": True,
        "routed_scaling_factor": 2.5,
        "rope_scaling": {
            "type": "yarn",
            "factor": 40,
            "original_max_position_embeddings": 4096,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
            "beta_fast": 32,
            "beta_slow": 1,
        },
    }
    cfg = config_from_hf(raw)
    assert cfg.moe_layers == (False, True, True, True)
    assert cfg.moe is not None and cfg.mla is not None
    assert (cfg.moe.router_scores, cfg.moe.group_score, cfg.moe.num_groups) == (
        "sigmoid",
        "top2_sum",
        4,
    )
    assert cfg.moe.shared_intermediate_size == 32 and cfg.moe.score_correction_bias
    assert cfg.rope.rotary_dim == 4 and cfg.rope.interleaved
    mscale = 0.1 * math.log(40) + 1.0
    assert cfg.attention_scale == pytest.approx(12**-0.5 * mscale * mscale)
    with pytest.raises(UnsupportedModelError, match="topk_method"):
        config_from_hf({**raw, "topk_method": "greedy"})
