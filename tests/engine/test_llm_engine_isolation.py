"""One request never fails the requests batched with it: a failure of one sequence inside
a step (its forward, its grammar mask, sampling it) fails that request alone; the others
finish with exactly what they would have produced without it, and every block comes back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from hearth.engine.async_engine import AsyncEngine
from hearth.engine.llm_engine import LLMEngine
from hearth.engine.outputs import RequestOutput
from hearth.engine.sampling_params import SamplingParams

# the last is mid-prefill (16-token steps) when the poisoned request breaks a step
PROMPTS = [[5, 6, 7, 8, 9], [11, 12, 13], [21, 22, 23, 24], list(range(100, 140))]
GOOD = [
    SamplingParams(temperature=0, max_tokens=10, ignore_eos=True),
    SamplingParams(temperature=0.8, top_k=40, seed=7, max_tokens=10, ignore_eos=True),
    SamplingParams(temperature=1.0, seed=3, max_tokens=10, ignore_eos=True, logprobs=2),
    SamplingParams(temperature=0, max_tokens=10, ignore_eos=True, logit_bias={100: 5.0}),
]
POISON_TOKEN = 4321


def _poisoned_params() -> SamplingParams:
    """An out-of-range value set behind SamplingParams' back, as a bug would: it overflows
    inside the sampler (top_k 2**63 once did that and failed the whole batch; the sampler
    now clamps top_k, so a temperature too large for a float stands in)."""
    params = SamplingParams(temperature=1.0, max_tokens=10, ignore_eos=True)
    object.__setattr__(params, "temperature", 10**400)
    return params


def _alone(make_engine: Callable[..., LLMEngine]) -> list[list[int]]:
    engine = make_engine(max_num_batched_tokens=16)
    results = []
    for i, (prompt, params) in enumerate(zip(PROMPTS, GOOD, strict=True)):
        engine.add_request(f"alone{i}", prompt, params)
        while engine.has_unfinished_requests():
            for out in engine.step():
                if out.finished:
                    results.append(out.outputs[0].token_ids)
    return results


def _run_all(engine: LLMEngine) -> dict[str, RequestOutput]:
    final: dict[str, RequestOutput] = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                final[out.request_id] = out
    return final


def _add_good(engine: LLMEngine) -> None:
    for i, (prompt, params) in enumerate(zip(PROMPTS, GOOD, strict=True)):
        engine.add_request(f"good{i}", prompt, params)


def _check(engine: LLMEngine, final: dict[str, RequestOutput], alone: list[list[int]]) -> None:
    assert final["bad"].error is not None
    for i, tokens in enumerate(alone):
        out = final[f"good{i}"]
        assert out.error is None
        assert out.outputs[0].token_ids == tokens
        assert out.outputs[0].finish_reason == "length"
    assert not engine.has_unfinished_requests()
    assert engine.block_manager.num_used_blocks == 0


def test_a_sampling_overflow_fails_only_its_request(
    make_engine: Callable[..., LLMEngine],
) -> None:
    alone = _alone(make_engine)
    engine = make_engine(max_num_batched_tokens=16)
    _add_good(engine)
    engine.add_request("bad", [40, 41, 42], _poisoned_params())
    final = _run_all(engine)
    _check(engine, final, alone)
    assert "too large" in str(final["bad"].error)


def test_a_failing_forward_fails_only_the_sequence_that_breaks_it(
    make_engine: Callable[..., LLMEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = _alone(make_engine)
    engine = make_engine(max_num_batched_tokens=16)
    forward = engine.runner.model.forward

    def breaks_on_poison(input_ids: torch.Tensor, *args: Any) -> Any:
        if bool((input_ids == POISON_TOKEN).any()):
            raise RuntimeError("kernel failed on this sequence")
        return forward(input_ids, *args)

    monkeypatch.setattr(engine.runner.model, "forward", breaks_on_poison)
    # first, so that its failing step also holds the 40-token prompt mid-prefill
    engine.add_request(
        "bad", [POISON_TOKEN, 3, 4], SamplingParams(n=2, max_tokens=5, temperature=0)
    )
    _add_good(engine)
    final = _run_all(engine)
    _check(engine, final, alone)
    assert "kernel failed" in str(final["bad"].error)


class _BrokenMatcher:
    """A grammar whose mask raises after a few tokens (a logits processor's bug)."""

    def __init__(self) -> None:
        self.calls = 0

    def fill_mask(self, logits: torch.Tensor) -> None:
        self.calls += 1
        if self.calls > 2:
            raise ValueError("grammar state is broken")

    def accept(self, token: int) -> None:
        pass

    def fit_budget(self, token: int, num_left: int) -> int:
        return token

    def is_accepting(self) -> bool:
        return False

    def is_finished(self) -> bool:
        return False


def test_a_failing_grammar_fails_only_its_request(
    make_engine: Callable[..., LLMEngine],
) -> None:
    alone = _alone(make_engine)
    engine = make_engine(max_num_batched_tokens=16)
    _add_good(engine)
    engine.add_request("bad", [40, 41, 42], SamplingParams(max_tokens=10, ignore_eos=True))
    engine.requests["bad"].seqs[0].matcher = _BrokenMatcher()
    final = _run_all(engine)
    _check(engine, final, alone)
    assert "grammar state is broken" in str(final["bad"].error)


@pytest.fixture
def front(make_engine: Callable[..., LLMEngine]) -> Iterator[AsyncEngine]:
    engine = AsyncEngine(make_engine(max_num_batched_tokens=16))
    yield engine
    engine.shutdown()


def test_four_streams_finish_beside_a_poisoned_request(front: AsyncEngine) -> None:
    """The attack of issue 31 item 3, through the engine API that bypasses validation."""

    async def stream(i: int) -> list[int]:
        ids: list[int] = []
        params = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True)
        async for out in front.generate(PROMPTS[i], params, f"s{i}"):
            ids += out.outputs[0].delta_token_ids
        return ids

    async def poisoned() -> BaseException | None:
        await asyncio.sleep(0.05)  # land in the middle of the streams
        try:
            async for _ in front.generate([40, 41, 42], _poisoned_params(), "bad"):
                pass
        except Exception as exc:
            return exc
        return None

    async def main() -> tuple[list[list[int]], BaseException | None]:
        *streams, error = await asyncio.gather(*(stream(i) for i in range(4)), poisoned())
        return streams, error  # type: ignore[return-value]

    streams, error = asyncio.run(main())
    assert error is not None
    assert [len(s) for s in streams] == [40] * 4
    assert front.metrics().num_blocks_used == 0
    # and the engine still serves
    again = asyncio.run(_one(front))
    assert again == streams[0]


async def _one(front: AsyncEngine) -> list[int]:
    ids: list[int] = []
    params = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True)
    async for out in front.generate(PROMPTS[0], params, "again"):
        ids += out.outputs[0].delta_token_ids
    return ids
