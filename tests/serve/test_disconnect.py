"""Issue 31 item 5: a non-streaming request whose client gives up is aborted (as a stream
is): its sequences stop and its KV blocks return, on a real uvicorn with an httpx client
that times out. (The Ollama routes share the same wait, `unless_disconnected`; they cannot
bias the end token away, so a test there could not tell an abort from an early end.)"""

from __future__ import annotations

import time

import httpx
import pytest

MODEL = "smollm2:135m"
# SmolLM2's end tokens biased away: without the disconnect it would run to the context end
NO_EOS = {"0": -100, "1": -100, "2": -100}


def _idle(served) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    m = served.main.state.pool.models[MODEL].engine.metrics()
    return m.num_running, m.num_waiting, m.num_blocks_used


def _generated(served) -> int:  # type: ignore[no-untyped-def]
    return served.main.state.pool.models[MODEL].engine.metrics().generation_tokens_total


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/chat/completions",
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": "Tell me a long story."}],
                "n": 4,
                "logit_bias": NO_EOS,
            },
        ),
        (
            "/v1/completions",
            {
                "model": MODEL,
                "prompt": "Once upon a time",
                "max_tokens": "room",
                "n": 2,
                "logit_bias": NO_EOS,
            },
        ),
    ],
)
def test_a_client_that_times_out_is_aborted(served, path: str, body: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    if body.get("max_tokens") == "room":  # as much as the context leaves
        body = {**body, "max_tokens": served.main.state.pool.models[MODEL].max_model_len - 16}
    before = _idle(served)
    generated_before = _generated(served)
    assert before[:2] == (0, 0)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(served.main.url + path, json=body, timeout=httpx.Timeout(60, read=1.5))
    # it ran (no end token: it would run on for the whole context) ...
    assert _generated(served) > generated_before
    deadline = time.monotonic() + 20
    while _idle(served) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    # ... and was aborted: nothing runs, its blocks are back, no token is generated after
    assert _idle(served) == before
    stopped_at = _generated(served)
    time.sleep(1)
    assert _generated(served) == stopped_at
