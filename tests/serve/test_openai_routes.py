"""The OpenAI API through the official `openai` client against a real uvicorn server with
SmolLM2: chat (plain, streamed with usage), completions with echo + logprobs (equal to the
engine's prompt_logprobs), models, embeddings, and errors raised as the client's own
exception types."""

from __future__ import annotations

import asyncio
import math

import httpx
import openai
import pytest

from hearth.engine.sampling_params import SamplingParams

MODEL = "smollm2:135m"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(served):  # type: ignore[no-untyped-def]
    with openai.OpenAI(
        base_url=served.main.url + "/v1", api_key="unused", max_retries=0, timeout=120
    ) as client:
        yield client


def test_chat_plain(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=8, temperature=0)
    assert r.choices[0].message.content == "The capital of France is Paris."
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens == 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + 8


def test_chat_streamed_with_usage_and_logprobs(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        max_tokens=5,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        logprobs=True,
        top_logprobs=2,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The capital of France is"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["length"]
    entries = [
        e
        for c in chunks
        if c.choices and c.choices[0].logprobs
        for e in c.choices[0].logprobs.content or []
    ]
    assert len(entries) == 5 and "".join(e.token for e in entries) == text
    for e in entries:  # greedy: the chosen token is the most likely one
        assert len(e.top_logprobs) == 2 and e.top_logprobs[0].token == e.token
        assert e.logprob <= 0 and math.isclose(e.logprob, e.top_logprobs[0].logprob)


def test_completions_echo_logprobs_equal_engine(served, client: openai.OpenAI) -> None:  # type: ignore[no-untyped-def]
    prompt = "The quick brown fox jumps over the lazy dog"
    r = client.completions.create(
        model=MODEL, prompt=prompt, echo=True, logprobs=5, max_tokens=1, temperature=0
    )
    lp = r.choices[0].logprobs
    assert r.choices[0].text.startswith(prompt)
    model = served.main.state.pool.models[MODEL]
    ids = model.tokenizer.encode(prompt)

    async def engine_run():  # type: ignore[no-untyped-def]
        final = None
        params = SamplingParams(max_tokens=1, temperature=0, prompt_logprobs=5)
        async for out in model.engine.generate(ids, params):
            final = out
        return final

    ref = served.call(engine_run())
    n = len(ids)
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    for i in range(1, n):
        want = ref.prompt_logprobs[i][ids[i]].logprob
        assert math.isclose(lp.token_logprobs[i], want, abs_tol=1e-4), i
        assert len(lp.top_logprobs[i]) >= 5
    assert "".join(lp.tokens[:n]) == prompt
    assert len(lp.tokens) == n + 1  # the prompt, then the one generated token


def test_completions_prompt_forms_and_scoring(client: openai.OpenAI) -> None:
    r = client.completions.create(
        model=MODEL, prompt=["1, 2, 3,", "a, b, c,"], max_tokens=2, temperature=0
    )
    assert [c.index for c in r.choices] == [0, 1] and r.usage.completion_tokens == 4
    ids = [[16, 28, 33], [17, 28, 34]]
    r = client.completions.create(model=MODEL, prompt=ids, max_tokens=2, temperature=0)
    assert r.usage.prompt_tokens == 6 and len(r.choices) == 2
    # max_tokens=0 + echo scores the prompt only (lm-eval's loglikelihood requests)
    r = client.completions.create(
        model=MODEL, prompt="Paris is in France", echo=True, logprobs=1, max_tokens=0
    )
    assert r.choices[0].text == "Paris is in France" and r.usage.completion_tokens == 0
    with pytest.raises(openai.BadRequestError, match="suffix"):
        client.completions.create(model=MODEL, prompt="a", suffix="b", max_tokens=1)


def test_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError, match="hearth pull"):
        client.models.retrieve("nope:1b")


def test_embeddings(client: openai.OpenAI) -> None:
    r = client.embeddings.create(model=MODEL, input=["a cat", "a kitten", "tax law"])
    vectors = [d.embedding for d in r.data]  # the client asks for base64 and decodes it
    assert len(vectors[0]) == 576 and r.usage.prompt_tokens > 0
    norms = [math.sqrt(sum(x * x for x in v)) for v in vectors]
    assert all(math.isclose(n, 1.0, abs_tol=1e-4) for n in norms)

    def cos(a, b):  # type: ignore[no-untyped-def]
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])
    floats = client.embeddings.create(model=MODEL, input="a cat", encoding_format="float")
    assert all(
        math.isclose(x, y, abs_tol=1e-6)
        for x, y in zip(floats.data[0].embedding, vectors[0], strict=True)
    )
    short = client.embeddings.create(model=MODEL, input="a cat", dimensions=8)
    assert len(short.data[0].embedding) == 8


def test_errors_are_the_clients_own(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="hearth pull"):
        client.chat.completions.create(model="missing:7b", messages=QUESTION)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=5)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=10**9)


BAD = [
    ("not json at all", "not valid JSON"),
    ({"model": MODEL, "messages": []}, "messages"),
    ({"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}, "role"),
    ({"model": MODEL, "messages": QUESTION, "max_tokens": -3}, "max_tokens"),
    ({"model": MODEL, "messages": QUESTION, "max_tokens": "lots"}, "max_tokens"),
    ({"model": MODEL, "messages": QUESTION, "bogus_field": 1}, "bogus_field"),
    ({"model": MODEL, "messages": QUESTION, "logit_bias": {"x": 1}}, "logit_bias"),
    ({"model": MODEL, "messages": QUESTION, "logit_bias": {"99999999": 1}}, "logit_bias"),
    ({"model": "../../etc/passwd", "messages": QUESTION}, "name"),
    (
        {
            "model": MODEL,
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}
            ],
        },
        "vision",
    ),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi " * 1200}]}, "context"),
    ({"messages": QUESTION}, "model"),
]


@pytest.mark.parametrize(("body", "says"), BAD)
def test_bad_input_is_4xx_saying_what_to_fix(served, body, says) -> None:  # type: ignore[no-untyped-def]
    url = served.main.url + "/v1/chat/completions"
    if isinstance(body, str):
        r = httpx.post(url, content=body, headers={"content-type": "application/json"})
    else:
        r = httpx.post(url, json=body, timeout=60)
    assert 400 <= r.status_code < 500, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert says.lower() in error["message"].lower(), error


def test_body_limit_and_unknown_route(served) -> None:  # type: ignore[no-untyped-def]
    big = b"x" * (served.main.state.options.max_body_bytes + 1)
    r = httpx.post(served.main.url + "/v1/completions", content=big)
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    r = httpx.get(served.main.url + "/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"


def test_metrics_and_health(served) -> None:  # type: ignore[no-untyped-def]
    text = httpx.get(served.main.url + "/metrics").text
    for name in (
        "hearth_requests_total",
        "hearth_time_to_first_token_seconds_bucket",
        "hearth_inter_token_latency_seconds_bucket",
        "hearth_kv_cache_usage_ratio",
        "hearth_prefix_cache_hit_rate",
        "hearth_num_requests_waiting",
        "hearth_prompt_tokens_total",
        "hearth_generation_tokens_total",
    ):
        assert name in text, name
    assert 'route="/v1/chat/completions"' in text
    assert httpx.get(served.main.url + "/health").json()["models_loaded"] == [MODEL]


def test_queue_full_is_503_with_retry_after(served) -> None:  # type: ignore[no-untyped-def]
    url = served.limited.url + "/v1/completions"
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 200, "stream": True}

    async def run() -> tuple[int, str | None]:
        async with (
            httpx.AsyncClient(timeout=120) as http,
            http.stream("POST", url, json=body) as first,
        ):
            assert first.status_code == 200
            lines = first.aiter_lines()  # held: dropping it would hang up
            await lines.__anext__()  # the first request now holds the only slot
            second = await http.post(url, json={**body, "stream": False})
            return second.status_code, second.headers.get("retry-after")

    status, retry = asyncio.run(run())
    assert status == 503 and retry is not None and int(retry) >= 1
