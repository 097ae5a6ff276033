"""ModelRunner (hearth.engine.model_runner): the flat layout of a step (ids, positions, KV
slots, block tables, which rows sample and which predict prompt tokens) and, on a tiny
llama, that the rows it returns equal a full forward's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from hearth.engine.llm_engine import LLMEngine
from hearth.engine.model_runner import prepare_inputs
from hearth.engine.sampling_params import SamplingParams
from hearth.engine.scheduler import SchedulerOutput
from hearth.engine.sequence import Sequence

BS = 4


def _seq(prompt: list[int], table: list[int], computed: int = 0, **params: Any) -> Sequence:
    seq = Sequence("r", prompt, SamplingParams(**params), block_size=BS)
    seq.block_table = table
    seq.num_computed_tokens = computed
    return seq


def test_a_prefill_chunk_and_a_decode_laid_out_flat() -> None:
    # a: 6-token prompt, first chunk of 4 (no sampling yet); b: decoding its 6th token
    a = _seq([10, 11, 12, 13, 14, 15], table=[7, 3])
    b = _seq([20, 21, 22, 23, 24], table=[2, 9], computed=5)
    b.append_token(25)
    step = prepare_inputs(SchedulerOutput(seqs=[a, b], num_tokens=[4, 1]), BS)
    assert step.input_ids.tolist() == [10, 11, 12, 13, 25]
    assert step.positions.tolist() == [0, 1, 2, 3, 5]
    # slot = block * BS + offset: a's tokens 0..3 in block 7, b's position 5 in block 9
    assert step.meta.slot_mapping.tolist() == [28, 29, 30, 31, 37]
    assert step.meta.context_lens.tolist() == [4, 6]
    assert step.meta.query_lens == [4, 1]
    assert step.meta.block_tables.tolist() == [[7, 3], [2, 9]]
    # only b reached its last token: it samples, from flat row 4
    assert step.sample_seqs == [b] and step.sample_rows == [4]
    assert step.prompt_rows == {}


def test_prompt_logprob_rows_start_where_asked() -> None:
    seq = _seq([1, 2, 3, 4, 5, 6], table=[0, 1], prompt_logprobs=0, prompt_logprobs_start=3)
    seq.prompt_logprobs = [None] * 3  # what the engine sets for prompt_logprobs_start=3
    step = prepare_inputs(SchedulerOutput(seqs=[seq], num_tokens=[6]), BS)
    # positions 2..4 predict prompt tokens 3..5; the last row samples
    assert step.prompt_rows == {seq.seq_id: ([2, 3, 4], [2, 3, 4])}
    assert step.sample_rows == [5]


def test_returned_rows_equal_a_full_forward(
    make_engine: Callable[..., LLMEngine], tiny_llama: tuple[Any, Any]
) -> None:
    _, hf_model = tiny_llama
    engine = make_engine()
    prompt = [5, 900, 4000, 17, 250, 3, 77]
    seq = _seq(prompt, table=[], prompt_logprobs=0)
    seq.prompt_logprobs = [None]
    assert engine.block_manager.allocate(seq, len(prompt))
    try:
        out = engine.runner.run(SchedulerOutput(seqs=[seq], num_tokens=[len(prompt)]))
        with torch.no_grad():
            want = hf_model(torch.tensor([prompt])).logits[0].float()
        assert out.sample_seqs == [seq] and out.logits.shape == (1, want.shape[-1])
        torch.testing.assert_close(out.logits[0], want[-1], atol=1e-3, rtol=1e-3)
        positions, logits = out.prompt_logits[seq.seq_id]
        assert positions == list(range(len(prompt) - 1))
        torch.testing.assert_close(logits, want[:-1], atol=1e-3, rtol=1e-3)
    finally:
        engine.block_manager.free(seq)
