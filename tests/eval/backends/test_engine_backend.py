"""The engine backend against the engine's documented generate API (prompt ids in,
prompt_logprobs with ranks out). Until hearth.engine.llm.LLM lands, the API is served by
a stand-in computing with a tiny transformers model; the numbers must equal the
in-process reference, and a task's requests must go in one call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eval_tiny_lm import HFEngineStandIn, HFReferenceLM

from hearth.eval.backends.engine_backend import EngineLM
from hearth.eval.lm import GenerationRequest
from hearth.eval.tasks import get_task
from hearth.eval.tasks.base import Settings


def test_loglikelihood_equals_reference_in_one_call(
    eval_data: Path, tiny_hf_model: Any, tiny_tokenizer: Any, reference_lm: HFReferenceLM
) -> None:
    items = get_task("arc_challenge").build(eval_data, Settings(num_fewshot=2, limit=3))
    requests = [r for item in items for r in item.requests]
    engine = HFEngineStandIn(tiny_hf_model, tiny_tokenizer)
    lm = EngineLM(engine, tiny_tokenizer.encode)
    got = lm.loglikelihood(requests)
    want = reference_lm.loglikelihood(requests)
    assert [g for g, _ in got] == pytest.approx([w for w, _ in want], abs=1e-4)
    assert [g for _, g in got] == [w for _, w in want]
    assert engine.calls == [len(requests)]


def test_generate_and_truncation(tiny_hf_model: Any, tiny_tokenizer: Any, reference_lm: HFReferenceLM) -> None:
    engine = HFEngineStandIn(tiny_hf_model, tiny_tokenizer)
    lm = EngineLM(engine, tiny_tokenizer.encode, max_model_len=64)
    reqs = [GenerationRequest("Question: 2+2?\nAnswer:", ("Question:",), 8)] * 2
    assert lm.generate_until(reqs) == reference_lm.generate_until(reqs[:1]) * 2
    assert engine.calls == [2]
    long_context = "word " * 200
    ((ll, _),) = lm.loglikelihood([(long_context, " end")])
    assert ll < 0  # left-truncated to fit the 64-token context, still scored
    with pytest.raises(ValueError, match="batch_size"):
        EngineLM(engine, tiny_tokenizer.encode, batch_size=0)


def test_batches_bounded_by_context_tokens_in_order(
    eval_data: Path, tiny_hf_model: Any, tiny_tokenizer: Any, reference_lm: HFReferenceLM
) -> None:
    items = get_task("arc_challenge").build(eval_data, Settings(num_fewshot=1, limit=4))
    requests = [r for item in items for r in item.requests]
    engine = HFEngineStandIn(tiny_hf_model, tiny_tokenizer)
    one_context = len(tiny_tokenizer.encode(items[0].requests[0][0]))
    lm = EngineLM(engine, tiny_tokenizer.encode, max_batch_tokens=2 * one_context + 1)
    prompts = [lm._prompt(c, x) for c, x in requests]
    calls = lm._calls(prompts)
    # in the task's order (waiting for a shared prefix is the engine scheduler's job)
    assert [i for call in calls for i in call] == list(range(len(requests)))
    for call in calls:
        contexts = [tuple(prompts[i][0][: -prompts[i][1]]) for i in call]
        distinct = list(dict.fromkeys(contexts))
        assert sum(len(c) for c in distinct) <= lm.max_batch_tokens or len(distinct) == 1
    assert len(calls) >= 2
    got = lm.loglikelihood(requests)
    want = reference_lm.loglikelihood(requests)
    assert [g for g, _ in got] == pytest.approx([w for w, _ in want], abs=1e-4)
    assert engine.calls == [len(c) for c in calls]
    with pytest.raises(ValueError, match="max_batch_tokens"):
        EngineLM(engine, tiny_tokenizer.encode, max_batch_tokens=0)
    small = EngineLM(engine, tiny_tokenizer.encode, batch_size=3)
    assert [len(c) for c in small._calls(prompts)][:2] == [3, 3]


def test_one_token_answers_of_a_question_go_as_one_request(
    eval_data: Path, tiny_hf_model: Any, tiny_tokenizer: Any, reference_lm: HFReferenceLM
) -> None:
    """MMLU's four answers " A".." D" are one token each after the same context: one
    request per question, its candidates' logprobs equal to scoring each answer."""
    items = get_task("mmlu").build(eval_data, Settings(num_fewshot=1, limit=2))
    requests = [r for item in items for r in item.requests]
    assert len(requests) == 4 * len(items)
    engine = HFEngineStandIn(tiny_hf_model, tiny_tokenizer)
    lm = EngineLM(engine, tiny_tokenizer.encode)
    assert all(lm._prompt(c, x)[1] == 1 for c, x in requests)
    got = lm.loglikelihood(requests)
    want = reference_lm.loglikelihood(requests)
    assert [g for g, _ in got] == pytest.approx([w for w, _ in want], abs=1e-4)
    assert [g for _, g in got] == [w for _, w in want]
    assert sum(engine.calls) == len(items)
    # a lone one-token continuation keeps the prompt-logprob road
    (alone,) = lm.loglikelihood(requests[:1])
    assert alone[0] == pytest.approx(want[0][0], abs=1e-4)
