"""Every family's tiny random model: hearth's logits equal transformers' (fp32, eager
attention) on sequences of several lengths, each alone and all in one flat batch."""

from __future__ import annotations

from typing import Any

import pytest
import transformers as tf
from sequence_runner import SequenceRunner
from tiny_models import COMMON, hf_logits

TOL = 1e-4
MOE = dict(moe_intermediate_size=32, num_experts_per_tok=2)
# transformers' MLA expands K/V to every head itself, so it needs num_key_value_heads == heads
MLA = dict(
    num_key_value_heads=4, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=12
)


def _configs() -> dict[str, Any]:
    c = COMMON
    mla_common = {k: v for k, v in c.items() if k != "num_key_value_heads"}
    return {
        "llama": tf.LlamaConfig(**c),
        "mistral": tf.MistralConfig(**c, sliding_window=5),
        "qwen2": tf.Qwen2Config(
            **c, use_sliding_window=True, sliding_window=5, max_window_layers=1
        ),
        "qwen3": tf.Qwen3Config(**c, head_dim=24),
        "qwen2_moe": tf.Qwen2MoeConfig(
            **c, **MOE, num_experts=4, shared_expert_intermediate_size=48, norm_topk_prob=False
        ),
        "qwen3_moe": tf.Qwen3MoeConfig(**c, **MOE, num_experts=4, norm_topk_prob=True),
        "mixtral": tf.MixtralConfig(**c, num_local_experts=4, num_experts_per_tok=2),
        "gemma": tf.GemmaConfig(**c, head_dim=16),
        "gemma2": tf.Gemma2Config(
            **c,
            head_dim=16,
            query_pre_attn_scalar=24,
            sliding_window=5,
            attn_logit_softcapping=3.0,
            final_logit_softcapping=2.0,
        ),
        "gemma3": tf.Gemma3TextConfig(
            **c, head_dim=16, sliding_window=5, layer_types=["sliding_attention", "full_attention"]
        ),
        "phi3": tf.Phi3Config(**c, pad_token_id=0, bos_token_id=1, eos_token_id=2),
        "deepseek_v2": tf.DeepseekV2Config(
            **mla_common,
            **MOE,
            **MLA,
            q_lora_rank=None,
            n_routed_experts=4,
            n_shared_experts=1,
            first_k_dense_replace=1,
            topk_method="group_limited_greedy",
            n_group=2,
            topk_group=1,
        ),
        "deepseek_v3": tf.DeepseekV3Config(
            **mla_common,
            **MOE,
            **MLA,
            q_lora_rank=24,
            n_routed_experts=4,
            n_shared_experts=1,
            first_k_dense_replace=1,
            n_group=2,
            topk_group=1,
            routed_scaling_factor=1.5,
        ),
    }


SEQUENCES = [[3], [5, 17, 200, 9, 41, 77, 128], [*list(range(30, 43)), 255, 0, 1, 2, 250, 19]]


@pytest.mark.parametrize("family", list(_configs()))
def test_family_matches_transformers(family: str, tiny_pair: Any) -> None:
    hf, model = tiny_pair(_configs()[family])
    refs = [hf_logits(hf, ids) for ids in SEQUENCES]
    alone = [SequenceRunner(model, 1, 32, block_size=4).step([(0, ids)])[0] for ids in SEQUENCES]
    runner = SequenceRunner(model, len(SEQUENCES), 32, block_size=4)
    batched = runner.step(list(enumerate(SEQUENCES)))
    for ref, a, b in zip(refs, alone, batched, strict=True):
        assert ref.abs().max() > 0.5  # the logits are not trivially small
        assert (a - ref).abs().max() <= TOL
        assert (b - ref).abs().max() <= TOL
