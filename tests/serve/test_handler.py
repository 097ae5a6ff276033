"""The generation handler on the served SmolLM2 (the real pool, engine and admission),
called directly with a starlette Request and a renderer written here that records what it
is given: a plain answer is rendered from the final outputs with the one usage builder's
numbers; a stream's pieces come prompt by prompt, then the end, then the trailer; an error
inside a stream becomes the renderer's error piece and still gets the trailer; a client
that hangs up gets a 499 and its engine request is aborted; the model is held for exactly
the length of the request, and usage is noted for the ledger in every case."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import Request

from hearth.engine.outputs import RequestOutput
from hearth.engine.sampling_params import SamplingParams
from hearth.errors import InvalidParameterError
from hearth.serve.engine_request import EngineRequest, Usage
from hearth.serve.handler import handle, hold_model
from hearth.serve.streaming import AbortingStream

MODEL = "smollm2:135m"


class Recorder:
    """A renderer that keeps what the handler hands it; `fail_at`: raise on that chunk."""

    media_type = "text/plain"

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.finals: list[Any] = []
        self.usage: Usage | None = None
        self.request_ids: list[str] = []
        self.num_chunks = 0

    def whole(
        self, finals: list[RequestOutput], usage: Usage
    ) -> tuple[dict[str, Any], dict[str, str]]:
        self.finals, self.usage = finals, usage
        return {"texts": [o.text for f in finals for o in f.outputs]}, {"x-renderer": "1"}

    def chunks(self, prompt_index: int, out: RequestOutput) -> list[str]:
        self.num_chunks += 1
        if self.num_chunks == self.fail_at:
            raise RuntimeError("renderer broke")
        if out.request_id not in self.request_ids:
            self.request_ids.append(out.request_id)
        return [f"{prompt_index}:{o.delta_text}" for o in out.outputs if o.delta_text]

    def end(self, finals: list[RequestOutput | None], usage: Usage) -> list[str]:
        self.finals, self.usage = finals, usage
        return ["end"]

    def error(self, exc: Exception, request_id: str) -> str:
        return f"error:{exc}"

    def trailer(self) -> list[str]:
        return ["trailer"]


def _request(connected: bool = True) -> Request:
    async def receive() -> dict[str, Any]:
        if not connected:
            return {"type": "http.disconnect"}
        await asyncio.Event().wait()  # the client stays, silent
        return {}

    scope = {"type": "http", "method": "POST", "path": "/t", "headers": [], "query_string": b""}
    return Request(scope, receive)  # type: ignore[arg-type]


def _run(
    served: Any,
    request: Request,
    engine_request: EngineRequest | Exception,
    renderer: Recorder,
) -> Any:
    """handle() on the servers' loop; a stream is read to its end there too."""
    state = served.main.state

    async def prepare(model: Any, rid: str) -> tuple[EngineRequest, Recorder]:
        if isinstance(engine_request, Exception):
            raise engine_request
        return engine_request, renderer

    async def go() -> Any:
        held = await hold_model(state, request, MODEL)
        assert held.model.active >= 1 and held.loaded_s == 0.0  # preloaded
        response = await handle(request, state, held, prepare)
        if isinstance(response, AbortingStream):
            return response, [piece async for piece in response.body_iterator]
        return response, None

    return served.call(go())


def _prompt(served: Any, text: str) -> tuple[int, ...]:
    return tuple(served.main.state.pool.models[MODEL].tokenizer.encode(text))


def _idle(served: Any) -> bool:
    model = served.main.state.pool.models[MODEL]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        m = model.engine.metrics()
        if model.active == 0 and m.num_running == 0 and m.num_waiting == 0:
            return True
        time.sleep(0.05)
    return False


def test_plain_answer_with_usage(served) -> None:  # type: ignore[no-untyped-def]
    prompt = _prompt(served, "The capital of France is")
    params = SamplingParams(n=2, temperature=0.0, max_tokens=4, ignore_eos=True)
    renderer, request = Recorder(), _request()
    engine_request = EngineRequest((prompt,), params, headers={"x-plan": "p"})
    response, _ = _run(served, request, engine_request, renderer)
    assert isinstance(response, JSONResponse) and response.status_code == 200
    assert response.headers["x-plan"] == "p" and response.headers["x-renderer"] == "1"
    (final,) = renderer.finals
    assert [len(o.token_ids) for o in final.outputs] == [4, 4]
    usage = renderer.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (len(prompt), 8)
    assert usage.ttft_s is not None and 0 < usage.ttft_s <= usage.total_s
    assert usage.prompt_eval_s + usage.eval_s <= usage.total_s
    assert (request.state.prompt_tokens, request.state.output_tokens) == (len(prompt), 8)
    assert request.state.ttft_s == usage.ttft_s and request.state.model == MODEL
    assert _idle(served)


def test_prompt_only_counts_no_output(served) -> None:  # type: ignore[no-untyped-def]
    params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0)
    renderer, request = Recorder(), _request()
    engine_request = EngineRequest((_prompt(served, "Hi there"),), params, discard_output=True)
    _run(served, request, engine_request, renderer)
    assert renderer.usage is not None and renderer.usage.completion_tokens == 0
    assert request.state.output_tokens == 0


def test_stream_runs_prompts_in_order(served) -> None:  # type: ignore[no-untyped-def]
    params = SamplingParams(temperature=0.0, max_tokens=3, ignore_eos=True)
    prompts = (_prompt(served, "One"), _prompt(served, "Two, three"))
    renderer, request = Recorder(), _request()
    response, pieces = _run(served, request, EngineRequest(prompts, params, stream=True), renderer)
    assert isinstance(response, AbortingStream) and response.media_type == "text/plain"
    assert pieces[-2:] == ["end", "trailer"]
    owners = [p.split(":")[0] for p in pieces[:-2]]
    assert owners == sorted(owners) and set(owners) == {"0", "1"}
    rid = request.state.request_id
    assert renderer.request_ids == [f"{rid}-0", f"{rid}-1"]
    assert all(f is not None and f.finished for f in renderer.finals)
    usage = renderer.usage
    assert usage is not None and usage.prompt_tokens == len(prompts[0]) + len(prompts[1])
    assert usage.completion_tokens == 6 and request.state.output_tokens == 6
    assert _idle(served)


def test_error_inside_a_stream(served) -> None:  # type: ignore[no-untyped-def]
    params = SamplingParams(temperature=0.0, max_tokens=200, ignore_eos=True)
    renderer, request = Recorder(fail_at=3), _request()
    engine_request = EngineRequest((_prompt(served, "Count:"),), params, stream=True)
    _, pieces = _run(served, request, engine_request, renderer)
    assert pieces[-2:] == ["error:renderer broke", "trailer"] and "end" not in pieces
    assert 2 <= request.state.output_tokens < 200  # noted, and the rest was never made
    assert _idle(served)


def test_failed_preparation_releases_the_model(served) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidParameterError, match="bad"):
        _run(served, _request(), InvalidParameterError("x", "x: bad"), Recorder())
    assert served.main.state.pool.models[MODEL].active == 0


def test_client_gone_is_499_and_aborts(served) -> None:  # type: ignore[no-untyped-def]
    params = SamplingParams(temperature=0.0, max_tokens=900, ignore_eos=True)
    request = _request(connected=False)
    engine_request = EngineRequest((_prompt(served, "A long story:"),), params)
    with pytest.raises(HTTPException) as caught:
        _run(served, request, engine_request, Recorder())
    assert caught.value.status_code == 499
    assert request.state.output_tokens < 900  # noted, and cut short
    assert _idle(served)
