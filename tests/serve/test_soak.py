"""Soak (issue 31): a few minutes of mixed traffic on a real uvicorn — chats streamed and
not, completions, embeddings, clients that hang up (streaming and not), bad requests, and a
license-policy change half-way — then checks: every request outside the bad and abandoned
ones succeeded, the bad ones got a 4xx (never a 5xx), the engine returns to idle (nothing
running or waiting, every KV block free), RSS stays within the KV pool of where it started
once the engine gives idle memory back, and /health kept answering quickly throughout.
Bounded in time (SOAK_S) and in clients; loopback only."""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from hearth.config import load_settings
from hearth.engine.kv_memory import resident_bytes

MODEL = "smollm2:135m"
SOAK_S = float(os.environ.get("HEARTH_SOAK_S", "150"))
NO_EOS = {"0": -100, "1": -100, "2": -100}

pytestmark = pytest.mark.slow


def _bad_requests(url: str) -> list[tuple[str, str, Any]]:
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    return [
        ("POST", url + "/v1/chat/completions", {**chat, "top_k": 9223372036854775808}),
        ("POST", url + "/v1/chat/completions", {**chat, "temperature": -1}),
        ("POST", url + "/v1/chat/completions", {**chat, "n": 1000}),
        (
            "POST",
            url + "/v1/chat/completions",
            {**chat, "logit_bias": {str(i): 1 for i in range(5000)}},
        ),
        ("POST", url + "/v1/chat/completions", {**chat, "model": "no-such-model:1b"}),
        ("POST", url + "/v1/chat/completions", "{not json"),
        (
            "POST",
            url + "/api/generate",
            {"model": MODEL, "prompt": "x", "options": {"top_k": 2**64}},
        ),
        ("POST", url + "/api/embed", {"model": MODEL, "input": ["a"] * 300}),
        ("POST", url + "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 10**9}),
    ]


class Tally:
    def __init__(self) -> None:
        self.ok = 0
        self.failures: list[str] = []
        self.bad_ok = 0
        self.hung_up = 0
        self.health: list[float] = []


async def _good(http: httpx.AsyncClient, url: str, rng: random.Random, tally: Tally) -> None:
    kind = rng.choice(["chat", "chat_stream", "completion", "generate", "embed"])
    words = " ".join(
        rng.choice(["red", "cat", "sky", "one", "run"]) for _ in range(rng.randint(3, 40))
    )
    if kind == "chat":
        r = await http.post(
            url + "/v1/chat/completions",
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": words}],
                "max_tokens": rng.randint(4, 24),
                "n": rng.choice([1, 1, 2]),
            },
        )
        ok = r.status_code == 200 and r.json()["choices"]
    elif kind == "chat_stream":
        ok = True
        async with http.stream(
            "POST",
            url + "/v1/chat/completions",
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": words}],
                "max_tokens": rng.randint(4, 24),
                "stream": True,
            },
        ) as r:
            ok = r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data: {") and '"error"' in line:
                    ok = False
    elif kind == "completion":
        r = await http.post(
            url + "/v1/completions",
            json={"model": MODEL, "prompt": words, "max_tokens": rng.randint(4, 24)},
        )
        ok = r.status_code == 200
    elif kind == "generate":
        r = await http.post(
            url + "/api/generate",
            json={
                "model": MODEL,
                "prompt": words,
                "stream": False,
                "options": {"num_predict": rng.randint(4, 24)},
            },
        )
        ok = r.status_code == 200 and r.json()["done"]
    else:
        r = await http.post(
            url + "/api/embed", json={"model": MODEL, "input": [words] * rng.randint(1, 8)}
        )
        ok = r.status_code == 200 and len(r.json()["embeddings"]) >= 1
    if ok:
        tally.ok += 1
    else:
        tally.failures.append(f"{kind}: {getattr(r, 'status_code', '?')} {r.text[:200]}")


async def _hang_up(http: httpx.AsyncClient, url: str, rng: random.Random, tally: Tally) -> None:
    """A client that gives up: mid-stream, or on a non-streaming request by timing out."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell a long story."}],
        "max_tokens": 400,
        "logit_bias": NO_EOS,
    }
    timeout = httpx.Timeout(30, read=rng.uniform(0.3, 1.5))
    try:
        if rng.random() < 0.5:
            async with http.stream(
                "POST", url + "/v1/chat/completions", json={**body, "stream": True}
            ) as r:
                async for _ in r.aiter_lines():
                    if rng.random() < 0.1:
                        break
        else:
            await http.post(url + "/v1/chat/completions", json={**body, "n": 2}, timeout=timeout)
    except httpx.ReadTimeout:
        pass
    tally.hung_up += 1


async def _bad(http: httpx.AsyncClient, url: str, rng: random.Random, tally: Tally) -> None:
    method, where, body = rng.choice(_bad_requests(url))
    if isinstance(body, str):
        r = await http.request(
            method, where, content=body, headers={"content-type": "application/json"}
        )
    else:
        r = await http.request(method, where, json=body)
    if 400 <= r.status_code < 500:
        tally.bad_ok += 1
    else:
        tally.failures.append(f"bad request {where} got {r.status_code}: {r.text[:200]}")


def _health(url: str, tally: Tally, stop: threading.Event) -> None:
    """In its own thread with a blocking client: the traffic's event loop (the clients')
    must not add its own delays to what is measured."""
    with httpx.Client(timeout=30) as http:
        while not stop.is_set():
            start = time.perf_counter()
            r = http.get(url + "/health")
            tally.health.append(time.perf_counter() - start)
            if r.status_code != 200:
                tally.failures.append(f"/health got {r.status_code}")
            stop.wait(0.2)


async def _soak(url: str, settings: Any, tally: Tally) -> None:
    from hearth.licenses.policy import set_policy_value

    stop = threading.Event()
    deadline = time.monotonic() + SOAK_S

    async def client(seed: int, role: str) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(timeout=300) as http:
            while time.monotonic() < deadline:
                if role == "good":
                    await _good(http, url, rng, tally)
                elif role == "hang":
                    await _hang_up(http, url, rng, tally)
                else:
                    await _bad(http, url, rng, tally)
                await asyncio.sleep(rng.uniform(0, 0.3))

    async def policy_change() -> None:
        await asyncio.sleep(SOAK_S / 2)
        # SmolLM2 is Apache-2.0: a commercial policy must not disturb its traffic
        await asyncio.to_thread(set_policy_value, settings, "commercial", "true")

    health = threading.Thread(target=_health, args=(url, tally, stop))
    health.start()
    roles = ["good"] * 6 + ["hang"] * 2 + ["bad"]
    try:
        await asyncio.gather(policy_change(), *(client(i, role) for i, role in enumerate(roles)))
    finally:
        stop.set()
        health.join()


def test_soak(tmp_path: Path, smollm2_gguf: Path) -> None:
    from hearth.serve.app import create_app
    from hearth.serve.options import ServeOptions
    from hearth.store import Store

    settings = load_settings({"HEARTH_HOME": str(tmp_path / "home")})
    Store(settings).import_path(smollm2_gguf, MODEL)
    options = ServeOptions(port=0, kv_cache_gb=0.25, max_model_len=1024, access_log=False)
    app = create_app(settings, options, preload=[MODEL])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 600
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    url = f"http://{host}:{port}"
    try:
        engine = app.state.hearth.pool.models[MODEL].engine
        engine.idle_release_s = 2.0
        pool_bytes = engine.engine.kv_cache_bytes
        httpx.post(
            url + "/api/generate",
            json={
                "model": MODEL,
                "prompt": "warm up",
                "stream": False,
                "options": {"num_predict": 4},
            },
            timeout=300,
        )
        rss_start = resident_bytes()
        tally = Tally()
        asyncio.run(_soak(url, settings, tally))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = engine.metrics()
            if (m.num_running, m.num_waiting, m.num_blocks_used) == (0, 0, 0):
                break
            time.sleep(0.2)
        time.sleep(engine.idle_release_s + 2)  # the engine gives idle memory back
        rss_end = resident_bytes()
        health = sorted(tally.health)
        report = {
            "seconds": SOAK_S,
            "ok": tally.ok,
            "bad_answered_4xx": tally.bad_ok,
            "hung_up": tally.hung_up,
            "failures": tally.failures[:5],
            "health_median_ms": round(statistics.median(health) * 1000, 1),
            "health_p99_ms": round(health[int(len(health) * 0.99)] * 1000, 1),
            "health_max_ms": round(health[-1] * 1000, 1),
            "rss_start_mb": rss_start >> 20,
            "rss_end_mb": rss_end >> 20,
            "kv_pool_mb": pool_bytes >> 20,
        }
        print("soak:", json.dumps(report))
        assert not tally.failures, report
        assert tally.ok > 5 and tally.bad_ok > 3 and tally.hung_up > 3, report
        m = engine.metrics()
        assert (m.num_running, m.num_waiting, m.num_blocks_used) == (0, 0, 0), m
        assert rss_end - rss_start < pool_bytes, report
        assert statistics.median(health) < 0.1, report
    finally:
        server.should_exit = True
        thread.join(30)
