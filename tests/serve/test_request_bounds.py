"""Issue 31 items 3 and 4 at the API: every numeric sampling parameter is range-checked
(400 naming it) before anything reaches the engine, per-request work is bounded, and one
poisoned request never fails the requests running beside it."""

from __future__ import annotations

import threading

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
        ({"typical_p": 0}, "typical_p"),
        ({"repeat_last_n": -2}, "repeat_last_n"),
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


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/embed", {"model": MODEL, "input": "word " * 200_000, "truncate": False}),
        ("/v1/embeddings", {"model": MODEL, "input": ["word " * 200_000]}),
        ("/v1/completions", {"model": MODEL, "prompt": "word " * 200_000}),
        ("/api/generate", {"model": MODEL, "prompt": "word " * 200_000, "raw": True}),
    ],
)
def test_large_inputs_are_tokenized_off_the_event_loop(
    served,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    body: dict,  # type: ignore[no-untyped-def,type-arg]
) -> None:
    """A 1 MB body's tokenizing took the event loop (and /health) for seconds: it runs in a
    worker thread now. The real tokenizer runs; the spy only notes which thread called it."""

    async def loop_thread() -> int:
        return threading.get_ident()

    loop_id = served.call(loop_thread())
    tokenizer = served.main.state.pool.models[MODEL].tokenizer
    callers: list[int] = []
    encode = tokenizer.encode

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        callers.append(threading.get_ident())
        return encode(*args, **kwargs)

    monkeypatch.setattr(tokenizer, "encode", spy)
    r = httpx.post(served.main.url + path, json=body, timeout=300)
    assert r.status_code == 400, r.text  # longer than the context
    assert callers and loop_id not in callers
