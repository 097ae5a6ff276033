"""The scheduler driven without a model: 'sampling' appends a fixed token."""

from hearth.engine.block_manager import BlockManager
from hearth.engine.sampling_params import SamplingParams
from hearth.engine.scheduler import Scheduler, SchedulerConfig
from hearth.engine.sequence import Sequence, SequenceStatus

BS = 4


def _make(num_blocks: int, budget: int, max_seqs: int = 16) -> Scheduler:
    return Scheduler(SchedulerConfig(budget, max_seqs), BlockManager(num_blocks, BS))


def _seq(n_prompt: int, start: int = 0) -> Sequence:
    return Sequence("r", list(range(start, start + n_prompt)), SamplingParams(), block_size=BS)


def _step(s: Scheduler, max_out: int) -> list[tuple[int, int]]:
    out = s.schedule()
    s.postprocess(out)
    for seq in out.seqs:
        if seq.num_computed_tokens == len(seq):
            seq.append_token(7)
            if seq.num_output_tokens >= max_out:
                s.finish(seq, "length")
    return [(seq.seq_id, n) for seq, n in zip(out.seqs, out.num_tokens, strict=True)]


def test_chunked_prefill_respects_the_budget_and_mixes_with_decodes() -> None:
    s = _make(64, budget=8)
    a = _seq(3)
    s.add(a)
    assert _step(s, 100) == [(a.seq_id, 3)]
    b = _seq(20, start=100)
    s.add(b)
    # a decodes (1 token) while b's prompt is chunked under the 8-token budget
    assert _step(s, 100) == [(a.seq_id, 1), (b.seq_id, 7)]
    assert _step(s, 100) == [(a.seq_id, 1), (b.seq_id, 7)]
    assert _step(s, 100) == [(a.seq_id, 1), (b.seq_id, 6)]
    assert b.num_output_tokens == 1  # sampled once its whole prompt was in
    assert _step(s, 100) == [(a.seq_id, 1), (b.seq_id, 1)]


def test_preemption_recomputes_and_everything_finishes_without_leaks() -> None:
    s = _make(num_blocks=6, budget=64)  # 24 token slots for 3 sequences of 10 + 6
    seqs = [_seq(10, start=100 * i) for i in range(3)]
    for q in seqs:
        s.add(q)
    steps = 0
    while s.has_unfinished():
        _step(s, max_out=6)
        steps += 1
        assert steps < 200
        assert s.block_manager.num_used_blocks == sum(len(q.block_table) for q in s.running)
    assert s.num_preemptions > 0
    assert all(q.status is SequenceStatus.FINISHED and q.num_output_tokens == 6 for q in seqs)
    assert s.block_manager.num_free_blocks == 6


def test_newest_is_preempted_first() -> None:
    s = _make(num_blocks=4, budget=64)
    old, new = _seq(7), _seq(8, start=50)
    s.add(old)
    s.add(new)
    _step(s, 100)  # old: 2 blocks (7 + sampled), new: 2 blocks
    assert s.block_manager.num_free_blocks == 0
    out = s.schedule()  # old needs a 3rd block at token 9
    assert out.preempted == [new]
    assert new.status is SequenceStatus.WAITING and new.block_table == []
    assert s.waiting[0] is new
    assert out.seqs == [old]


def test_max_num_seqs_and_abort_free_blocks() -> None:
    s = _make(num_blocks=32, budget=64, max_seqs=2)
    seqs = [_seq(5, start=10 * i) for i in range(3)]
    for q in seqs:
        s.add(q)
    _step(s, 100)
    assert len(s.running) == 2 and len(s.waiting) == 1
    s.finish(seqs[0], "abort")
    s.finish(seqs[2], "abort")  # still waiting
    assert seqs[0].finish_reason == "abort"
    s.finish(seqs[1], "abort")
    assert not s.has_unfinished()
    assert s.block_manager.num_free_blocks == 32


def test_sibling_waits_for_the_prompt_being_computed_without_blocking_others() -> None:
    # n > 1: the siblings of a request share its prompt; the in-flight prefix wait makes
    # the second wait for the first's blocks, while an unrelated request goes ahead
    s = _make(num_blocks=32, budget=64)
    parent, child, other = _seq(9), _seq(9), _seq(3, start=40)
    s.add(parent)
    s.add(child)
    s.add(other)
    first = s.schedule()
    assert child not in first.seqs and {parent, other} <= set(first.seqs)
    s.postprocess(first)
    second = s.schedule()
    assert child in second.seqs
    assert child.num_cached_tokens == 8  # parent's two full blocks shared


def test_sequence_sharing_a_prefix_being_computed_waits_for_its_blocks() -> None:
    s = _make(num_blocks=32, budget=64)
    first = _seq(14)  # three full blocks of 4, then 2 tokens
    same_opening = Sequence("r", [*range(12), 90, 91, 92], SamplingParams(), block_size=BS)
    unrelated = _seq(6, start=50)
    for seq in (first, same_opening, unrelated):
        s.add(seq)
    step1 = s.schedule()
    # admitted together, same_opening would compute first's three blocks a second time
    assert first in step1.seqs and unrelated in step1.seqs and same_opening not in step1.seqs
    s.postprocess(step1)
    step2 = s.schedule()
    assert same_opening in step2.seqs
    assert same_opening.num_cached_tokens == 12
    assert step2.num_tokens[step2.seqs.index(same_opening)] == 3


def test_without_prefix_caching_nothing_waits() -> None:
    s = Scheduler(SchedulerConfig(64, 16), BlockManager(32, BS, enable_prefix_caching=False))
    a, b = _seq(14), _seq(14)
    s.add(a)
    s.add(b)
    assert set(s.schedule().seqs) == {a, b}


def test_drafts_take_only_what_every_running_decode_leaves() -> None:
    """An older sequence's drafts never take the block a younger one needs to decode: both
    decode, the drafts shrink to the room left, and nobody is preempted (drafts placed
    first once took that block, and the preempted sequence recomputed its prompt)."""
    s = _make(num_blocks=4, budget=64)
    old, young = _seq(4), _seq(4, start=100)  # one full block each
    for q in (old, young):
        s.add(q)
    _step(s, 100)  # both prompts in, one token sampled each: each now needs a 2nd block
    old.draft_token_ids = [1, 2, 3, 4, 5, 6, 7, 8, 9]  # would fill both free blocks
    out = s.schedule()
    assert not out.preempted
    assert [q.seq_id for q in out.seqs] == [old.seq_id, young.seq_id]
    assert out.num_tokens == [1 + 3, 1]  # old's 2nd block holds its token and 3 drafts
    assert old.draft_token_ids == [1, 2, 3]
    assert s.block_manager.num_free_blocks == 0
