"""`hearth serve --tensor-parallel` / `--pipeline-parallel`: SmolLM2 split over 3 processes
(or into 2 stages) answers the official openai client; a worker killed mid-request fails
that request with 503 and Retry-After, the server stays up, and the next request loads the
model afresh and is answered (slow: the processes load fp32 weights, twice)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import MODEL, Listener

from hearth.config import load_settings
from hearth.serve.app import create_app
from hearth.serve.options import ServeOptions

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("split", "kind"),
    [({"tensor_parallel": 3}, "tensor-parallel"), ({"pipeline_parallel": 2}, "pipeline-parallel")],
    ids=["tensor", "pipeline"],
)
def test_a_dying_worker_fails_its_request_with_503_and_the_server_recovers(
    tmp_path: Path,
    smollm2_gguf: Path,
    start_app: Callable[[Any], Listener],
    split: dict[str, int],
    kind: str,
) -> None:
    from openai import OpenAI

    from hearth.store import Store

    settings = load_settings({"HEARTH_HOME": str(tmp_path / "home")})
    Store(settings).import_path(smollm2_gguf, MODEL)
    options = ServeOptions(port=0, quant="none", kv_cache_gb=0.05, **split)
    listener = start_app(create_app(settings, options, preload=[MODEL]))
    client = OpenAI(base_url=f"{listener.url}/v1", api_key="none", max_retries=0)
    messages: Any = [{"role": "user", "content": "What is the capital of France?"}]
    first = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=12, temperature=0
    )
    assert "Paris" in (first.choices[0].message.content or "")

    loaded = listener.state.pool.models[MODEL]
    workers = loaded.llm.engine.runner.model.workers
    answer: dict[str, httpx.Response] = {}

    def long_request() -> None:
        body = {"model": MODEL, "prompt": "Count to 500: 1, 2, 3, 4,", "max_tokens": 2000,
                "temperature": 0}  # fmt: skip
        answer["r"] = httpx.post(f"{listener.url}/v1/completions", json=body, timeout=300)

    thread = threading.Thread(target=long_request)
    thread.start()
    time.sleep(2)  # decoding by now (a count to 500 runs for minutes here)
    workers[0].kill()
    thread.join(300)
    response = answer["r"]
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert f"{kind} worker rank 1 stopped" in response.text and "retry" in response.text

    again = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=12, temperature=0
    )
    assert again.choices[0].message.content == first.choices[0].message.content
    assert listener.state.pool.models[MODEL] is not loaded  # loaded afresh
