import pytest

from hearth.engine.engine_config import DEFAULT_KV_CONTEXTS, GIB, EngineConfig, plan_kv_cache
from hearth.errors import CapacityError, UserInputError

PER_BLOCK = 1 << 20  # 1 MiB per 16-token block


def test_blocks_from_budget_and_context_capped_by_the_pool() -> None:
    plan = plan_kv_cache(EngineConfig(kv_cache_gb=10 * PER_BLOCK / GIB), PER_BLOCK, 8192)
    assert plan.num_blocks == 10
    assert plan.max_model_len == 160  # the pool holds 160 tokens, less than the model's 8192
    plan = plan_kv_cache(EngineConfig(kv_cache_gb=1.0, max_model_len=512), PER_BLOCK, 8192)
    assert plan.num_blocks == 1024 and plan.max_model_len == 512


def test_default_budget_never_exceeds_what_max_num_seqs_contexts_need() -> None:
    plan = plan_kv_cache(EngineConfig(max_num_seqs=2, max_model_len=64), PER_BLOCK, 8192)
    assert plan.num_blocks == 2 * 4


def test_default_budget_holds_a_few_full_contexts_not_a_share_of_ram() -> None:
    # 64 sequences may run, but the default pool holds DEFAULT_KV_CONTEXTS full contexts
    plan = plan_kv_cache(EngineConfig(max_num_seqs=64), 1024, 8192)
    assert plan.num_blocks == DEFAULT_KV_CONTEXTS * 8192 // 16
    assert plan.max_model_len == 8192


def test_budget_too_small_for_one_block_says_what_is_needed() -> None:
    with pytest.raises(CapacityError) as info:
        plan_kv_cache(EngineConfig(kv_cache_gb=0.5 * PER_BLOCK / GIB), PER_BLOCK, 8192)
    assert str(PER_BLOCK) in str(info.value) and "kv_cache_gb" in str(info.value)


def test_context_longer_than_pool_or_model_is_refused() -> None:
    with pytest.raises(CapacityError, match="max_model_len 4096"):
        plan_kv_cache(
            EngineConfig(kv_cache_gb=10 * PER_BLOCK / GIB, max_model_len=4096), PER_BLOCK, 8192
        )
    with pytest.raises(UserInputError, match="8192"):
        plan_kv_cache(EngineConfig(max_model_len=10000), PER_BLOCK, 8192)


@pytest.mark.parametrize(
    "field", ["block_size", "max_num_batched_tokens", "max_num_seqs", "kv_cache_gb"]
)
def test_bad_config_names_the_field(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        EngineConfig(**{field: 0})
