"""Sequence (hearth.engine.sequence): token bookkeeping across prompt and output, block
counts, readiness while a grammar compiles, and ids that order sequences."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from hearth.engine.sampling_params import SamplingParams
from hearth.engine.sequence import Sequence, SequenceStatus


def _seq(prompt: list[int], block_size: int = 4) -> Sequence:
    return Sequence("r", prompt, SamplingParams(), block_size=block_size)


def test_prompt_and_output_tokens() -> None:
    seq = _seq([5, 6, 7])
    assert seq.status is SequenceStatus.WAITING and not seq.is_finished
    assert (len(seq), seq.num_prompt_tokens, seq.num_output_tokens) == (3, 3, 0)
    assert seq.num_uncomputed_tokens == 3
    seq.num_computed_tokens = 3
    seq.append_token(9)
    seq.append_token(10)
    assert seq.prompt_token_ids == [5, 6, 7]
    assert seq.output_token_ids == [9, 10] and seq.num_output_tokens == 2
    assert seq.num_uncomputed_tokens == 2
    seq.status = SequenceStatus.FINISHED
    assert seq.is_finished


def test_the_prompt_is_copied_and_must_not_be_empty() -> None:
    prompt = [1, 2]
    seq = _seq(prompt)
    seq.append_token(3)
    assert prompt == [1, 2]
    with pytest.raises(ValueError, match="prompt_token_ids"):
        _seq([])


@pytest.mark.parametrize(("tokens", "blocks"), [(0, 0), (1, 1), (4, 1), (5, 2), (16, 4), (17, 5)])
def test_blocks_for_a_token_count(tokens: int, blocks: int) -> None:
    assert _seq([1]).num_blocks_for(tokens) == blocks


def test_not_ready_while_its_grammar_compiles() -> None:
    seq = _seq([1, 2])
    assert seq.is_ready()
    pending: Future[None] = Future()
    seq.matcher_future = pending
    assert not seq.is_ready()
    pending.set_result(None)
    assert seq.is_ready()


def test_ids_increase_and_repr_names_the_state() -> None:
    a, b = _seq([1]), _seq([1])
    assert b.seq_id > a.seq_id
    text = repr(a)
    assert f"id={a.seq_id}" in text and "waiting" in text and "tokens=1" in text
