from hearth.engine.block_manager import BlockManager
from hearth.engine.sampling_params import SamplingParams
from hearth.engine.sequence import Sequence

BS = 4


def _seq(tokens: list[int], **kw: object) -> Sequence:
    return Sequence("r", tokens, SamplingParams(**kw), block_size=BS)  # type: ignore[arg-type]


def _run_prefill(bm: BlockManager, seq: Sequence) -> None:
    bm.allocate_prefix(seq)
    assert bm.allocate(seq, seq.num_uncomputed_tokens)
    seq.num_computed_tokens = len(seq)
    bm.cache_full_blocks(seq)


def test_allocate_and_free_returns_every_block() -> None:
    bm = BlockManager(8, BS)
    seq = _seq(list(range(10)))
    _run_prefill(bm, seq)
    assert len(seq.block_table) == 3
    assert bm.num_free_blocks == 5
    assert bm.num_cached_blocks == 2  # two full blocks keyed, the partial one not
    bm.free(seq)
    assert bm.num_free_blocks == 8 and bm.num_used_blocks == 0
    assert bm.num_cached_blocks == 2  # kept for reuse


def test_prefix_hit_shares_blocks_and_leaves_a_token_to_compute() -> None:
    bm = BlockManager(8, BS)
    a = _seq(list(range(12)))
    _run_prefill(bm, a)
    b = _seq([*range(8), 99, 98, 97])
    assert bm.allocate_prefix(b) == 8
    assert b.block_table == a.block_table[:2]
    assert bm.blocks[a.block_table[0]].ref_count == 2
    # the whole prompt cached: the last block is recomputed for the logits
    c = _seq(list(range(12)))
    assert bm.allocate_prefix(c) == 8
    for s in (a, b, c):
        bm.free(s)
    assert bm.num_free_blocks == 8
    assert bm.num_prefix_hit_tokens == 16


def test_cached_blocks_survive_their_sequence_and_are_evicted_lru() -> None:
    bm = BlockManager(4, BS)
    a = _seq(list(range(9)))  # 2 full blocks + 1
    _run_prefill(bm, a)
    bm.free(a)
    b = _seq([*range(8), 5])
    assert bm.allocate_prefix(b) == 8  # reused after a ended
    bm.free(b)
    # a fresh sequence needing the whole pool evicts the cached blocks
    big = _seq(list(range(100, 116)))
    assert bm.allocate(big, 16)
    assert bm.num_free_blocks == 0 and bm.num_cached_blocks == 0
    bm.free(big)
    c = _seq([*range(8), 5])
    assert bm.allocate_prefix(c) == 0


def test_prompt_logprobs_disable_prefix_hits() -> None:
    bm = BlockManager(8, BS)
    _run_prefill(bm, _seq(list(range(9))))
    assert bm.allocate_prefix(_seq(list(range(9)), prompt_logprobs=0)) == 0


def test_prompt_logprobs_start_allows_prefix_hits_before_it() -> None:
    bm = BlockManager(8, BS)
    _run_prefill(bm, _seq(list(range(13))))
    # logprobs from token 9 on need the logits of position 8: 8 tokens may be cached
    late = _seq(list(range(13)), prompt_logprobs=0, prompt_logprobs_start=9)
    late.prompt_logprobs = [None] * 9  # as LLMEngine.add_request sets it
    assert bm.allocate_prefix(late) == 8
    early = _seq(list(range(13)), prompt_logprobs=0, prompt_logprobs_start=8)
    early.prompt_logprobs = [None] * 8
    assert bm.allocate_prefix(early) == 4


def test_allocate_fails_without_taking_anything() -> None:
    bm = BlockManager(2, BS)
    seq = _seq(list(range(12)))
    assert not bm.allocate(seq, 12)
    assert bm.num_free_blocks == 2 and seq.block_table == []


def test_same_block_computed_twice_keeps_the_first_key() -> None:
    bm = BlockManager(8, BS)
    a, b = _seq(list(range(5))), _seq(list(range(5)))
    for s in (a, b):
        bm.allocate(s, 5)
        s.num_computed_tokens = 5
    bm.cache_full_blocks(a)
    bm.cache_full_blocks(b)
    assert bm.num_cached_blocks == 1
    bm.free(a)
    bm.free(b)
    assert bm.num_free_blocks == 8
