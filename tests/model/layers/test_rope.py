"""RoPE variants end to end against transformers: linear, dynamic NTK (past
max_position_embeddings), llama3, YaRN on Llama; partial rotary with longrope (short and
long factors) on Phi-3; YaRN with mscale on DeepSeek-V3's interleaved MLA rope."""

from __future__ import annotations

from typing import Any

import pytest
import transformers as tf
from sequence_runner import SequenceRunner
from tiny_models import COMMON, hf_logits

from hearth.weights.config import RopeConfig

TOL = 1e-4
SHORT = [4, 8, 15, 16, 23, 42, 108]
LONG = [(i * 37) % 256 for i in range(22)]  # past the 16-token "original" context below
BASE = {**COMMON, "max_position_embeddings": 16}


def _configs() -> dict[str, Any]:
    def llama(**rope: Any) -> Any:
        return tf.LlamaConfig(**BASE, rope_parameters={"rope_theta": 500.0, **rope})

    mla = {k: v for k, v in COMMON.items() if k not in ("num_key_value_heads",)}
    half = 8  # rotary_dim / 2 for Phi-3 below: head_dim 16 * 1.0
    return {
        "linear": llama(rope_type="linear", factor=2.0),
        "dynamic": llama(rope_type="dynamic", factor=3.0),
        "llama3": llama(
            rope_type="llama3",
            factor=8.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=8,
        ),
        "yarn": llama(rope_type="yarn", factor=4.0, original_max_position_embeddings=8),
        "phi3_partial_longrope": tf.Phi3Config(
            **{**COMMON, "max_position_embeddings": 64},
            pad_token_id=0,
            original_max_position_embeddings=16,
            rope_parameters={
                "rope_type": "longrope",
                "rope_theta": 1000.0,
                "partial_rotary_factor": 0.5,
                "short_factor": [1.0 + 0.1 * i for i in range(half // 2)],
                "long_factor": [2.0 + 0.5 * i for i in range(half // 2)],
            },
        ),
        "deepseek_v3_yarn": tf.DeepseekV3Config(
            **mla,
            num_key_value_heads=4,
            kv_lora_rank=16,
            q_lora_rank=None,
            qk_nope_head_dim=8,
            qk_rope_head_dim=8,
            v_head_dim=12,
            n_routed_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            n_group=2,
            topk_group=1,
            first_k_dense_replace=1,
            rope_parameters={
                "rope_type": "yarn",
                "rope_theta": 10000.0,
                "factor": 4.0,
                "original_max_position_embeddings": 16,
                "mscale": 0.707,
                "mscale_all_dim": 0.707,
                "beta_fast": 32,
                "beta_slow": 1,
            },
        ),
    }


@pytest.mark.parametrize("variant", list(_configs()))
def test_rope_variant_matches_transformers(variant: str, tiny_pair: Any) -> None:
    hf, model = tiny_pair(_configs()[variant])
    for ids in (SHORT, LONG):
        ref = hf_logits(hf, ids)
        ours = SequenceRunner(model, 1, 32, block_size=4).step([(0, ids)])[0]
        assert (ours - ref).abs().max() <= TOL, variant


def test_rope_config_rejects_bad_fields() -> None:
    with pytest.raises(ValueError, match="rope type"):
        RopeConfig(theta=1e4, rotary_dim=8, type="ntk-by-parts")
    with pytest.raises(ValueError, match="rotary_dim must be even"):
        RopeConfig(theta=1e4, rotary_dim=7)
    with pytest.raises(ValueError, match="original_max_position_embeddings"):
        RopeConfig(theta=1e4, rotary_dim=8, type="llama3", factor=8.0)
