"""Which tensor-parallel sizes a model allows and how each tensor is cut: the cuts of all
ranks put back together are the whole tensor (or, for copied KV heads, the head each
rank's queries read)."""

from __future__ import annotations

import pytest
import torch

from hearth.errors import InvalidParameterError, UnsupportedModelError
from hearth.model.parallel.plan import ShardPlan, check_size, valid_sizes
from hearth.weights.config import ModelConfig, MoEConfig, RopeConfig


def config(heads: int, kv: int, inter: int = 96, vocab: int = 255, **kw: object) -> ModelConfig:
    return ModelConfig(
        architecture="llama",
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=inter,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=8,
        rope=RopeConfig(theta=1e4, rotary_dim=8),
        **kw,  # type: ignore[arg-type]
    )


def test_valid_sizes_of_smollm2_and_gemma3_shapes() -> None:
    assert valid_sizes(config(9, 3, inter=1536)) == [1, 3]  # SmolLM2-135M: 2 does not split
    assert valid_sizes(config(4, 1, inter=2048)) == [1, 2, 4]  # Gemma-3-270M: KV head copied
    assert valid_sizes(config(8, 4, inter=96)) == [1, 2, 4, 8]
    assert valid_sizes(config(8, 4, inter=100)) == [1, 2, 4]  # the MLP rows must split too


def test_a_size_that_does_not_split_names_the_valid_ones() -> None:
    with pytest.raises(InvalidParameterError, match=r"valid values: 1, 3$"):
        check_size(config(9, 3, inter=1536), 2)
    with pytest.raises(InvalidParameterError, match=">= 1"):
        check_size(config(4, 2), 0)
    moe = MoEConfig(num_experts=4, num_experts_per_tok=2, intermediate_size=32)
    with pytest.raises(UnsupportedModelError, match="mixture-of-experts"):
        check_size(config(4, 2, moe=moe, moe_layers=(True, True)), 2)
    check_size(config(9, 3, inter=1536), 1)  # one process: always fine


@pytest.mark.parametrize(("size", "kv"), [(2, 2), (4, 2), (2, 1)])
def test_cuts_put_back_together_are_the_whole(size: int, kv: int) -> None:
    whole = config(4, kv)
    d = whole.head_dim
    q = torch.randn(4 * d, 64)
    k = torch.randn(kv * d, 64)
    o = torch.randn(64, 4 * d)
    down = torch.randn(64, 96)
    embed = torch.randn(255, 64)
    plans = [ShardPlan(whole, r, size) for r in range(size)]
    name = "model.layers.0.self_attn."
    assert torch.equal(torch.cat([p.cut(name + "q_proj.weight", q) for p in plans]), q)
    assert torch.equal(torch.cat([p.cut(name + "o_proj.weight", o) for p in plans], 1), o)
    down_cuts = [p.cut("model.layers.1.mlp.down_proj.weight", down) for p in plans]
    assert torch.equal(torch.cat(down_cuts, 1), down)
    rows = torch.cat([p.cut("model.embed_tokens.weight", embed) for p in plans])
    assert rows.shape[0] == plans[0].padded_vocab and rows.shape[0] % size == 0
    assert torch.equal(rows[:255], embed) and not rows[255:].any()  # padding: zero rows
    norm = torch.randn(64)
    assert plans[-1].cut("model.layers.0.input_layernorm.weight", norm) is norm
    for p in plans:  # each rank's KV heads are those its query heads read (GQA groups)
        shard = p.shard_config()
        assert shard.num_attention_heads * size == 4
        k_cut = p.cut(name + "k_proj.weight", k)
        assert k_cut.shape[0] == shard.num_key_value_heads * d
        first_q_head = p.rank * shard.num_attention_heads
        first_kv = first_q_head // (4 // kv)
        assert torch.equal(k_cut[:d], k[first_kv * d : (first_kv + 1) * d])


def test_a_rank_outside_the_group_is_refused() -> None:
    with pytest.raises(ValueError, match=r"rank must be in 0\.\.1"):
        ShardPlan(config(4, 2), 2, 2)
