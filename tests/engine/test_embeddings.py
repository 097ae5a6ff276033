"""Embeddings over the tiny llama: a call cut into chunks (long prompts split over forwards)
gives the vectors of one forward per prompt; the engine interleaves an embedding call with
generation steps; per-call bounds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
import torch

from hearth.engine.async_engine import MAX_EMBED_INPUTS, AsyncEngine
from hearth.engine.embeddings import EmbeddingJob, pooled_embeddings
from hearth.engine.llm_engine import LLMEngine
from hearth.engine.sampling_params import SamplingParams
from hearth.errors import ContextLengthError, InvalidParameterError


def _prompts() -> list[list[int]]:
    g = torch.Generator().manual_seed(3)
    return [torch.randint(3, 40000, (n,), generator=g).tolist() for n in (5, 40, 7, 100, 3)]


def test_chunked_job_equals_one_forward_per_prompt(make_engine: Callable[..., LLMEngine]) -> None:
    model = make_engine().runner.model
    prompts = _prompts()
    whole = [pooled_embeddings(model, [p])[0] for p in prompts]
    job = EmbeddingJob(prompts, block_size=16, chunk_tokens=16)
    forwards = []
    while not job.done:
        forwards.append(job.run_chunk(model))
    assert max(forwards) <= 16 and sum(forwards) == sum(len(p) for p in prompts)
    assert len(forwards) > len(prompts)  # the 40- and 100-token prompts went in pieces
    for got, want in zip(job.vectors, whole, strict=True):
        assert torch.allclose(torch.tensor(got), torch.tensor(want), atol=1e-5)
        assert torch.tensor(got).norm().item() == pytest.approx(1.0, abs=1e-5)


@pytest.fixture
def front(make_engine: Callable[..., LLMEngine]) -> Iterator[AsyncEngine]:
    engine = AsyncEngine(make_engine(max_num_batched_tokens=16, max_model_len=256))
    yield engine
    engine.shutdown()


def test_a_chat_streams_while_a_large_embedding_call_runs(front: AsyncEngine) -> None:
    """Issue 31 item 4: an embed call used to hold the engine lock for its whole length."""
    texts: list[str | list[int]] = [[7 + i % 50] * 200 for i in range(40)]

    async def main() -> tuple[float, float, list[float]]:
        embed = asyncio.create_task(front.embed(texts))
        await asyncio.sleep(0.01)  # the embed call is queued first
        params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
        token_times = []
        async for out in front.generate([5, 6, 7], params, "chat"):
            token_times += [time.perf_counter()] * len(out.outputs[0].delta_token_ids)
        chat_done = time.perf_counter()
        vectors, counts = await embed
        assert len(vectors) == 40 and counts == [200] * 40
        return chat_done, time.perf_counter(), token_times

    chat_done, embed_done, token_times = asyncio.run(main())
    assert len(token_times) == 8
    # the chat finished while the embedding call was still being computed
    assert chat_done < embed_done
    assert front.metrics().num_blocks_used == 0


def test_bounds_and_truncation(front: AsyncEngine) -> None:
    with pytest.raises(InvalidParameterError, match="at most 256 inputs"):
        asyncio.run(front.embed(["x"] * (MAX_EMBED_INPUTS + 1)))
    with pytest.raises(InvalidParameterError, match=r"input\[1\] is empty"):
        asyncio.run(front.embed(["x", ""]))
    long: list[str | list[int]] = [[9] * 300]
    with pytest.raises(ContextLengthError, match=r"input\[0\] is 300 tokens"):
        asyncio.run(front.embed(long))
    vectors, counts = asyncio.run(front.embed(long, truncate=True))
    assert counts == [256] and len(vectors) == 1
