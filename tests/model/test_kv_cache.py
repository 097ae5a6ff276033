"""KV cache sizing and allocation, including MLA's decompressed per-head layout."""

from __future__ import annotations

import os

import pytest
import torch

from hearth.model.kv_cache import KVCache, allocate_kv_caches, kv_cache_bytes_per_block
from hearth.weights.families import config_from_hf

LLAMA = {
    "model_type": "llama",
    "vocab_size": 32,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 3,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
}
DEEPSEEK = {
    **LLAMA,
    "model_type": "deepseek_v2",
    "num_key_value_heads": 8,
    "kv_lora_rank": 16,
    "q_lora_rank": None,
    "qk_nope_head_dim": 8,
    "qk_rope_head_dim": 4,
    "v_head_dim": 6,
    "n_routed_experts": 4,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 16,
}


def test_bytes_per_block_counts_every_layer() -> None:
    config = config_from_hf(LLAMA)  # head_dim 8, 2 KV heads
    assert kv_cache_bytes_per_block(config, 16, torch.bfloat16) == 3 * 16 * 2 * (8 + 8) * 2
    mla = config_from_hf(DEEPSEEK)  # 8 heads of keys 12 wide, values 6 wide
    assert kv_cache_bytes_per_block(mla, 4, torch.float32) == 3 * 4 * 8 * (12 + 6) * 4


def test_allocate_shapes_and_write() -> None:
    caches = allocate_kv_caches(config_from_hf(DEEPSEEK), 5, 4, torch.float32)
    assert len(caches) == 3
    assert caches[0].key.shape == (5, 4, 8, 12)
    assert caches[0].value.shape == (5, 4, 8, 6)
    key, value = torch.randn(2, 8, 12), torch.randn(2, 8, 6)
    caches[1].write(torch.tensor([0, 13]), key, value)  # slot 13 = block 3, offset 1
    assert torch.equal(caches[1].key[3, 1], key[1])
    assert torch.equal(caches[1].value[0, 0], value[0])
    assert caches[0].key.abs().sum() == 0


def test_bad_sizes_raise() -> None:
    with pytest.raises(ValueError, match="num_blocks"):
        allocate_kv_caches(config_from_hf(LLAMA), 0, 4, torch.float32)
    with pytest.raises(ValueError, match="block_size"):
        kv_cache_bytes_per_block(config_from_hf(LLAMA), 0, torch.float32)
    with pytest.raises(ValueError, match="agree"):
        KVCache(torch.zeros(2, 4, 1, 8), torch.zeros(2, 4, 2, 8))


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_pool_is_zero_and_resident_only_where_used() -> None:
    """A 1.5 GB pool costs no RSS until blocks are written (the OS zero-fills pages on
    first touch); what a request writes is there, the rest reads as zeros."""
    config = config_from_hf(LLAMA)  # 3 layers x 2 KV heads x 8 dims: 1,536 B/token fp32
    before = _rss_mb()
    caches = allocate_kv_caches(config, 65536, 16, torch.float32)  # 1.5 GB
    assert _rss_mb() - before < 64
    key = torch.randn(1, 2, 8)
    caches[2].write(torch.tensor([65536 * 16 - 1]), key, key)
    assert torch.equal(caches[2].key[-1, -1], key[0])
    assert float(caches[0].value[40000].abs().sum()) == 0.0
    assert _rss_mb() - before < 64
