"""Issue 31 items 3 and 4 at the API: every numeric sampling parameter is range-checked
(400 naming it) before anything reaches the engine, per-request work is bounded, and one
poisoned request never fails the requests running beside it."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

MODEL = "smollm2:135m"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
GENERATE = {"model": MODEL, "prompt": "hi", "stream": False, "options": {"num_predict": 2}}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"top_k": 9223372036854775808}, "top_k"),
        ({"top_k": 2**31}, "top_k"),
        ({"max_tokens": 2**63}, "max_tokens"),
        ({"seed": 2**64}, "seed"),
        ({"n": 17}, "n"),
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"min_p": 1.5}, "min_p"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"logit_bias": {str(i): 1 for i in range(301)}}, "logit_bias"),
        ({"logit_bias": {"5": 101}}, "logit_bias"),
    ],
)
def test_openai_out_of_range_is_400_naming_the_field(served, extra: dict, param: str) -> None:  # type: ignore[no-untyped-def,type-arg]
    r = httpx.post(served.main.url + "/v1/chat/completions", json={**CHAT, **extra}, timeout=60)
    assert r.status_code == 400, r.text
    assert param in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"top_k": 9223372036854775808}, "top_k"),
        ({"num_ctx": 2**63}, "num_ctx"),
        ({"num_predict": 2**63}, "num_predict"),
        ({"seed": 2**63}, "seed"),
        ({"temperature": -0.5}, "temperature"),
        ({"top_p": 2}, "top_p"),
        ({"repeat_penalty": 0}, "repeat_penalty"),
        ({"frequency_penalty": 9}, "frequency_penalty"),
    ],
)
def test_ollama_out_of_range_is_400_naming_the_field(served, options: dict, param: str) -> None:  # type: ignore[no-untyped-def,type-arg]
    body = {**GENERATE, "options": {**GENERATE["options"], **options}}  # type: ignore[dict-item]
    r = httpx.post(served.main.url + "/api/generate", json=body, timeout=60)
    assert r.status_code == 400, r.text
    assert param in r.json()["error"]


def test_n_times_max_tokens_is_bounded(served) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(
        served.main.url + "/v1/completions",
        json={"model": MODEL, "prompt": ["a", "b"], "n": 16, "max_tokens": 2049},
        timeout=60,
    )
    assert r.status_code == 400, r.text
    assert "65536" in r.json()["error"]["message"] and r.json()["error"]["param"] == "max_tokens"


def test_embed_call_is_bounded(served) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(
        served.main.url + "/api/embed", json={"model": MODEL, "input": ["a"] * 257}, timeout=60
    )
    assert r.status_code == 400 and "at most 256 inputs" in r.json()["error"]
    r = httpx.post(
        served.main.url + "/v1/embeddings", json={"model": MODEL, "input": ["a"] * 257}, timeout=60
    )
    assert r.status_code == 400 and "at most 256 inputs" in r.json()["error"]["message"]


def test_health_answers_while_a_large_body_is_tokenized(served) -> None:  # type: ignore[no-untyped-def]
    """A 3.5 MB prompt is tokenized in a worker thread: /health keeps answering at once."""
    text = "word " * 700_000

    async def run() -> tuple[list[float], int]:
        async with httpx.AsyncClient(timeout=300) as http:
            big = asyncio.create_task(
                http.post(
                    served.main.url + "/api/embed",
                    json={"model": MODEL, "input": text, "truncate": False},
                )
            )
            waits = []
            while not big.done():
                start = time.perf_counter()
                r = await http.get(served.main.url + "/health")
                assert r.status_code == 200
                waits.append(time.perf_counter() - start)
                await asyncio.sleep(0.05)
            return waits, (await big).status_code

    waits, status = asyncio.run(run())
    assert status == 400  # longer than the context, and no truncation asked for
    # /health answered again and again while the body was being worked on (on the event
    # loop the tokenizing blocked it for seconds: a request or two, each held throughout)
    assert len(waits) >= 3
