"""32 concurrent streaming clients (httpx async, distinct prompts) all finish with their own
correct output and token counts; 8 more hang up mid-stream and the engine aborts them: the
KV-usage metric returns to its idle value."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx

MODEL = "smollm2:135m"


def _blocks_used(metrics: str) -> float:
    m = re.search(r'hearth_kv_cache_blocks_used\{model="smollm2:135m"\} (\S+)', metrics)
    assert m, metrics
    return float(m.group(1))


async def _stream(http: httpx.AsyncClient, url: str, number: int, hang_up: bool) -> dict:  # type: ignore[type-arg]
    prompt = ", ".join([str(number)] * 6) + ","
    body = {
        "model": MODEL,
        "prompt": prompt,
        "max_tokens": 200 if hang_up else 8,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    text, usage, finish, chunks = "", None, None, 0
    async with http.stream("POST", url, json=body) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            assert "error" not in data, data
            for c in data["choices"]:
                text += c["text"]
                finish = c["finish_reason"] or finish
                chunks += 1
            usage = data.get("usage") or usage
            if hang_up and chunks >= 2:
                break  # leaving the block closes the connection mid-stream
    return {"number": number, "text": text, "usage": usage, "finish": finish, "prompt": prompt}


def test_32_streams_and_8_hang_ups(served) -> None:  # type: ignore[no-untyped-def]
    url = served.main.url + "/v1/completions"
    idle = _blocks_used(httpx.get(served.main.url + "/metrics").text)
    tokenizer = served.main.state.pool.models[MODEL].tokenizer

    async def run() -> list[dict]:  # type: ignore[type-arg]
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(timeout=300, limits=limits) as http:
            jobs = [_stream(http, url, 100 + i, hang_up=False) for i in range(32)]
            jobs += [_stream(http, url, 500 + i, hang_up=True) for i in range(8)]
            return await asyncio.gather(*jobs)

    results = asyncio.run(run())
    done, hung = results[:32], results[32:]
    for r in done:
        assert r["finish"] == "length" and r["usage"]["completion_tokens"] == 8
        assert r["usage"]["prompt_tokens"] == len(tokenizer.encode(r["prompt"]))
        assert str(r["number"]) in r["text"], r  # each continues its own number pattern
        assert len(tokenizer.encode(r["text"], add_special_tokens=False)) <= 8
    assert len({r["text"] for r in done}) == 32
    assert all(r["usage"] is None and r["finish"] is None for r in hung)
    # the hung-up sequences were aborted: their blocks come back within a step or so
    deadline = time.monotonic() + 20
    while True:
        metrics = httpx.get(served.main.url + "/metrics").text
        if _blocks_used(metrics) == idle or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert _blocks_used(metrics) == idle
    assert 'hearth_num_requests_running{model="smollm2:135m"} 0.0' in metrics
    # a greedy stream gives what the same request gives alone (batching changed nothing)
    alone = httpx.post(
        url,
        json={"model": MODEL, "prompt": done[5]["prompt"], "max_tokens": 8, "temperature": 0},
        timeout=120,
    ).json()
    assert alone["choices"][0]["text"] == done[5]["text"]
