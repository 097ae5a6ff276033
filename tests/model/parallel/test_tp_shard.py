"""A one-rank shard (group of one: the collectives are the identity) is the whole model: its
logits equal build_model's on the reference ops. Multi-rank parity runs real processes in
tests/engine/test_tensor_parallel.py."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from hearth.model.batch import AttentionMetadata
from hearth.model.build import build_model
from hearth.model.kv_cache import allocate_kv_caches
from hearth.model.layers.ops import Ops
from hearth.model.parallel.group import TPGroup
from hearth.model.parallel.plan import ShardPlan
from hearth.model.parallel.shard import ShardDecoder, build_shard
from hearth.weights.loader import load_weights


def test_a_one_rank_shard_is_the_whole_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    hf = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=255,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            initializer_range=0.2,
        )
    )
    hf.save_pretrained(tmp_path)
    weights = load_weights(tmp_path)
    whole = build_model(weights.config, weights.tensors, backend=Ops())
    shard = build_shard(ShardPlan(weights.config, 0, 1), weights.tensors, TPGroup(0, 1))
    assert isinstance(shard, ShardDecoder)
    n = 6
    meta = AttentionMetadata(
        [n], torch.tensor([n], dtype=torch.int32), torch.arange(n),
        torch.zeros(1, 1, dtype=torch.int32), 16,
    )  # fmt: skip
    ids, pos = torch.randint(0, 255, (n,)), torch.arange(n)
    with torch.inference_mode():
        want = whole.compute_logits(
            whole(ids, pos, meta, allocate_kv_caches(weights.config, 1, 16, torch.float32))
        )
        caches = allocate_kv_caches(shard.config, 1, 16, torch.float32)
        got = shard.compute_logits(shard(ids, pos, meta, caches))
    assert got.shape == (n, 255)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
