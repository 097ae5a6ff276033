"""ModelConfig and its parts validate their fields when built and name the bad one."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace

import pytest

from hearth.weights.config import MLAConfig, ModelConfig, MoEConfig, RopeConfig

BASE = ModelConfig(
    architecture="llama",
    vocab_size=32,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=8,
    num_key_value_heads=2,
    head_dim=8,
    rope=RopeConfig(theta=1e4, rotary_dim=8),
)


def test_valid_config_is_frozen_with_derived_facts() -> None:
    assert BASE.k_head_dim == BASE.v_head_dim == 8
    assert BASE.num_kv_cache_heads == 2
    assert not BASE.is_sliding(0) and not BASE.is_moe(1)
    with pytest.raises(FrozenInstanceError):
        BASE.vocab_size = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"vocab_size": 0}, "vocab_size"),
        ({"num_key_value_heads": 3}, "num_key_value_heads"),
        ({"hidden_act": "relu6"}, "hidden_act"),
        ({"layer_types": ("full_attention",)}, "layer_types"),
        ({"layer_types": ("sliding_attention", "full_attention")}, "sliding_window"),
        ({"moe_layers": (True, True)}, "moe"),
        ({"final_logit_softcapping": -1.0}, "final_logit_softcapping"),
    ],
)
def test_bad_field_is_named(change: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        replace(BASE, **change)  # type: ignore[arg-type]


def test_sliding_layers_use_local_rope() -> None:
    local = RopeConfig(theta=1e4, rotary_dim=8)
    cfg = replace(
        BASE,
        rope=RopeConfig(theta=1e6, rotary_dim=8),
        rope_local=local,
        sliding_window=4,
        layer_types=("sliding_attention", "full_attention"),
    )
    assert cfg.rope_for(0) is local and cfg.rope_for(1).theta == 1e6


def test_moe_and_mla_parts_validate() -> None:
    with pytest.raises(ValueError, match="num_experts_per_tok"):
        MoEConfig(num_experts=4, num_experts_per_tok=5, intermediate_size=8)
    with pytest.raises(ValueError, match="num_groups"):
        MoEConfig(num_experts=6, num_experts_per_tok=2, intermediate_size=8, num_groups=4)
    with pytest.raises(ValueError, match="kv_lora_rank"):
        MLAConfig(
            q_lora_rank=None, kv_lora_rank=0, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8
        )
    mla = MLAConfig(
        q_lora_rank=16, kv_lora_rank=8, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=6
    )
    cfg = replace(BASE, mla=mla, num_key_value_heads=8)
    assert (cfg.k_head_dim, cfg.v_head_dim, cfg.num_kv_cache_heads) == (12, 6, 8)
