"""AsyncEngine over the tiny llama: streaming, concurrency, abort, cancellation, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from hearth.engine.async_engine import AsyncEngine
from hearth.engine.llm_engine import LLMEngine
from hearth.engine.sampling_params import SamplingParams
from hearth.errors import ContextLengthError

GREEDY = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)


@pytest.fixture
def front(make_engine: Callable[..., LLMEngine]) -> Iterator[AsyncEngine]:
    engine = AsyncEngine(make_engine(max_num_batched_tokens=16, max_model_len=128))
    yield engine
    engine.shutdown()


async def _collect(
    front: AsyncEngine, prompt: str | list[int], params: SamplingParams, rid: str
) -> tuple[str, list[int], str | None]:
    text, ids, reason = "", [], None
    async for out in front.generate(prompt, params, rid):
        c = out.outputs[0]
        text += c.delta_text
        ids += c.delta_token_ids
        assert c.text == text and c.token_ids == ids  # deltas add up to the whole
        reason = c.finish_reason
    return text, ids, reason


def test_concurrent_streams_match_sequential_runs(front: AsyncEngine) -> None:
    prompts = ["The quick brown fox", "Once upon a time there", "In the beginning"]

    async def main() -> list[tuple[str, list[int], str | None]]:
        return await asyncio.gather(
            *(_collect(front, p, GREEDY, f"c{i}") for i, p in enumerate(prompts))
        )

    together = asyncio.run(main())
    for i, p in enumerate(prompts):
        alone = asyncio.run(_collect(front, p, GREEDY, f"s{i}"))
        assert alone == together[i]
        assert alone[2] == "length" and len(alone[1]) == 10
    assert front.metrics().num_blocks_used == 0


def test_leaving_the_stream_early_aborts_and_frees_blocks(front: AsyncEngine) -> None:
    async def main() -> int:
        seen = 0
        async for _ in front.generate(
            [5, 6, 7, 8, 9], SamplingParams(max_tokens=200, ignore_eos=True), "early"
        ):
            seen += 1
            if seen == 3:
                break
        return seen

    assert asyncio.run(main()) == 3
    m = front.metrics()
    assert m.num_blocks_used == 0 and m.num_running == 0 and m.num_waiting == 0


def test_cancelling_the_task_aborts(front: AsyncEngine) -> None:
    async def main() -> None:
        started = asyncio.Event()

        async def consume() -> None:
            async for _ in front.generate(
                [4, 5, 6], SamplingParams(max_tokens=500, ignore_eos=True), "cancel-me"
            ):
                started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert front.metrics().num_blocks_used == 0


def test_exception_in_consumer_aborts(front: AsyncEngine) -> None:
    async def main() -> None:
        async for _ in front.generate(
            [4, 5, 6], SamplingParams(max_tokens=500, ignore_eos=True), "boom"
        ):
            raise ValueError("consumer failed")

    with pytest.raises(ValueError, match="consumer failed"):
        asyncio.run(main())
    assert front.metrics().num_blocks_used == 0


def test_abort_by_id_ends_the_stream(front: AsyncEngine) -> None:
    async def main() -> int:
        n = 0
        async for out in front.generate(
            [7, 8, 9], SamplingParams(max_tokens=500, ignore_eos=True), "by-id"
        ):
            n += 1
            if n == 2:
                await asyncio.to_thread(front.abort, "by-id")
                assert front.metrics().num_blocks_used == 0  # freed when abort returns
                break
            assert not out.finished
        return n

    assert asyncio.run(main()) == 2


def test_bad_input_raises_before_streaming(front: AsyncEngine) -> None:
    async def main() -> None:
        async for _ in front.generate(list(range(3, 300)), GREEDY, "too-long"):
            pass

    with pytest.raises(ContextLengthError):
        asyncio.run(main())
    assert front.metrics().num_blocks_used == 0
