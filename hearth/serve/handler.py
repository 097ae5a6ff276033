"""The one generation handler behind /v1/chat/completions, /v1/completions, /api/chat and
/api/generate (the way Ollama translates /v1 onto its own chat handler; vLLM's
`serving_engine` / `serving_chat` split likewise prepares an engine prompt, then renders).

A route holds its model (`hold_model`: the pool's `use`, with its license gate and
keep-alive), then hands `handle` a `prepare` step that turns the parsed body into an
`EngineRequest` and picks a `Renderer` for its wire format. `handle` does the rest, the
same for all four: admits and runs the engine requests (`Generation`: bounded queue,
metrics, abort when the consumer goes away), waits for a plain answer while watching for a
hang-up (499 and abort), streams through `AbortingStream`, notes usage for the ledger in a
`finally` (a request cut short still used what it generated) and turns an error inside a
started stream into the format's error object. Renderers only turn outputs into JSON,
SSE or NDJSON (render_openai.py, render_ollama.py). Never touches tensors."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from hearth.engine.outputs import RequestOutput
from hearth.serve.engine_request import EngineRequest, Usage
from hearth.serve.limits import Admission
from hearth.serve.metrics import ServerMetrics
from hearth.serve.model_pool import LoadedModel
from hearth.serve.state import ServerState, new_request_id, note
from hearth.serve.streaming import AbortingStream

# how often a non-streaming request checks whether its client is still there
DISCONNECT_POLL_S = 0.25
T = TypeVar("T")


class Renderer(Protocol):
    """One wire format's view of a request's outputs. Pure shaping: no waiting, no engine."""

    media_type: str  # of a stream

    def whole(
        self, finals: list[RequestOutput], usage: Usage
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """A plain answer: its JSON body and any headers of its own."""
        ...

    def chunks(self, prompt_index: int, out: RequestOutput) -> list[str]:
        """The stream pieces for one engine output of prompt `prompt_index` (maybe none)."""
        ...

    def end(self, finals: list[RequestOutput | None], usage: Usage) -> list[str]:
        """The pieces after the last output (a usage chunk, Ollama's final object)."""
        ...

    def error(self, exc: Exception, request_id: str) -> str:
        """The piece that reports an error once the stream has started."""
        ...

    def trailer(self) -> list[str]:
        """The pieces after everything, error or not (SSE's `data: [DONE]`)."""
        ...


# (the held model, the request id) -> the engine request and the renderer of its answer
Prepare = Callable[[LoadedModel, str], Awaitable[tuple[EngineRequest, Renderer]]]


@dataclass
class HeldModel:
    """A model held for the length of one request: released when the answer has been sent
    (or the stream ends), or at once by `release`. `loaded_s`: how long loading it took for
    this request (0 when it was in memory); `asked_at`: when the request asked for it."""

    model: LoadedModel
    stack: contextlib.AsyncExitStack
    loaded_s: float
    asked_at: float

    async def release(self) -> None:
        await self.stack.aclose()


async def hold_model(
    state: ServerState,
    request: Request,
    name: str,
    keep_alive_s: float | None = None,
    kinds: tuple[str, ...] = ("generation",),
) -> HeldModel:
    """The loaded model `name` (loaded first if needed, through the license gate), held
    until released. A given keep_alive replaces the model's (as Ollama does)."""
    asked_at = time.perf_counter()
    in_memory = list(state.pool.models.values())
    stack = contextlib.AsyncExitStack()
    try:
        model = await stack.enter_async_context(state.pool.use(name, keep_alive_s, kinds))
    except BaseException:
        await stack.aclose()
        raise
    note(request, model=model.name)
    loaded_s = 0.0 if any(m is model for m in in_memory) else model.load_duration_s
    return HeldModel(model, stack, loaded_s, asked_at)


@dataclass
class Generation:
    """One prompt's run through the engine, with its timing (for usage, Ollama's
    durations and the access log)."""

    model: LoadedModel
    request: EngineRequest
    prompt_index: int
    request_id: str
    admission: Admission
    metrics: ServerMetrics
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    last_token_at: float | None = None
    ended: float | None = None
    num_prompt_tokens: int = 0
    num_output_tokens: int = 0
    final: RequestOutput | None = None

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started

    async def stream(self) -> AsyncIterator[RequestOutput]:
        """The engine's outputs. Leaving early (or being cancelled) aborts the request."""
        prompt = list(self.request.prompts[self.prompt_index])
        async with self.admission.slot():
            gen = self.model.engine.generate(prompt, self.request.params, self.request_id)
            async with contextlib.aclosing(gen):  # type: ignore[type-var]
                async for out in gen:
                    self._count(out)
                    yield out

    def _count(self, out: RequestOutput) -> None:
        name, now = self.model.name, time.perf_counter()
        new = sum(len(o.delta_token_ids) for o in out.outputs)
        if new:
            if self.first_token_at is None:
                self.first_token_at = now
                self.metrics.ttft.labels(name).observe(now - self.started)
            elif self.last_token_at is not None:
                self.metrics.itl.labels(name).observe((now - self.last_token_at) / new)
            self.last_token_at = now
            self.num_output_tokens += new
            self.metrics.generation_tokens.labels(name).inc(new)
        if not self.num_prompt_tokens:
            self.num_prompt_tokens = len(out.prompt_token_ids)
            self.metrics.prompt_tokens.labels(name).inc(self.num_prompt_tokens)
        if out.finished:
            self.final = out
            self.ended = now

    async def run(self) -> RequestOutput:
        """Run to the end; the final output."""
        async for _ in self.stream():
            pass
        assert self.final is not None
        return self.final


@dataclass
class Run:
    """A request's generations, one per prompt (run one after another when streamed)."""

    request: EngineRequest
    gens: list[Generation]
    held: HeldModel

    def usage(self) -> Usage:
        """The one usage builder: counts over every prompt, times from the first prompt's
        admission and first token to the last one's end."""
        first_gen = self.gens[0]
        ends = [g.ended for g in self.gens if g.ended is not None]
        end = max(ends) if len(ends) == len(self.gens) else time.perf_counter()
        first = first_gen.first_token_at or end
        completion = sum(g.num_output_tokens for g in self.gens)
        outs = [o for g in self.gens if g.final is not None for o in g.final.outputs]
        return Usage(
            prompt_tokens=sum(g.num_prompt_tokens for g in self.gens),
            completion_tokens=0 if self.request.discard_output else completion,
            ttft_s=first_gen.ttft_s,
            total_s=end - self.held.asked_at,
            load_s=self.held.loaded_s,
            prompt_eval_s=first - first_gen.started,
            eval_s=end - first,
            draft_n=sum(o.draft_n for o in outs),
            draft_n_accepted=sum(o.draft_n_accepted for o in outs),
        )

    def note_usage(self, request: Request) -> None:
        """Facts for the access log and the usage ledger."""
        u = self.usage()
        note(
            request,
            prompt_tokens=u.prompt_tokens,
            output_tokens=u.completion_tokens,
            ttft_s=u.ttft_s,
        )


async def handle(
    request: Request, state: ServerState, held: HeldModel, prepare: Prepare
) -> JSONResponse | AbortingStream:
    """Prepare, run and answer one generation request on `held` (released at the end)."""
    rid = new_request_id()
    request.state.request_id = rid
    try:
        engine_request, renderer = await prepare(held.model, rid)
    except BaseException:
        await held.release()
        raise
    gens = [
        Generation(
            held.model,
            engine_request,
            i,
            rid if len(engine_request.prompts) == 1 else f"{rid}-{i}",
            state.admission,
            state.metrics,
        )
        for i in range(len(engine_request.prompts))
    ]
    run = Run(engine_request, gens, held)
    if not engine_request.stream:
        return await _whole(request, run, renderer)
    return await _stream(request, run, renderer)


async def _whole(request: Request, run: Run, renderer: Renderer) -> JSONResponse:
    async with run.held.stack:  # rendering may decode tokens: the model stays held until then
        try:
            runs = asyncio.gather(*(g.run() for g in run.gens))
            finals = await unless_disconnected(runs, request.is_disconnected)
        finally:  # a hang-up still used what was generated until then
            run.note_usage(request)
        body, headers = renderer.whole(finals, run.usage())
    return JSONResponse(body, headers={**run.request.headers, **headers})


async def _stream(request: Request, run: Run, renderer: Renderer) -> AbortingStream:
    try:
        first = await first_then_rest(run.gens[0].stream())
    except BaseException:
        await run.held.release()
        raise
    response = AbortingStream(_pieces(request, run, renderer, first), renderer.media_type)
    response.headers.update(run.request.headers)
    return response


async def _pieces(
    request: Request, run: Run, renderer: Renderer, first: AsyncIterator[RequestOutput]
) -> AsyncIterator[str]:
    """The stream's body; the model is held until it ends (the client may stop it)."""
    try:
        async with run.held.stack:
            for i, gen in enumerate(run.gens):
                outputs = first if i == 0 else gen.stream()
                async with contextlib.aclosing(outputs):  # type: ignore[type-var]
                    async for out in outputs:
                        for piece in renderer.chunks(i, out):
                            yield piece
            for piece in renderer.end([g.final for g in run.gens], run.usage()):
                yield piece
    except Exception as exc:
        yield renderer.error(exc, request.state.request_id)
    finally:  # also when the client stops the stream: what was generated so far counts
        run.note_usage(request)
    for piece in renderer.trailer():
        yield piece


async def unless_disconnected(aw: Awaitable[T], disconnected: Callable[[], Awaitable[bool]]) -> T:
    """Await `aw` (a non-streaming request's run) while watching its client: if the client
    hangs up first, `aw` is cancelled, which aborts its engine requests and frees their
    blocks at once (an abandoned n=4 request once ran on for minutes), and a 499 ends the
    handler (nginx's "client closed request"; nobody reads it)."""
    task = asyncio.ensure_future(aw)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await disconnected():
                raise HTTPException(499, "the client closed the connection before the answer")
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def first_then_rest(gen: AsyncIterator[RequestOutput]) -> AsyncIterator[RequestOutput]:
    """Wait for the first output before a streaming response starts, so that bad input, a
    full queue or a too-long prompt still get a proper status code; then stream the rest."""
    try:
        first = await gen.__anext__()
    except BaseException:
        await gen.aclose()  # type: ignore[attr-defined]
        raise

    async def rest() -> AsyncIterator[RequestOutput]:
        try:
            yield first
            async for out in gen:
                yield out
        finally:
            await gen.aclose()  # type: ignore[attr-defined]

    return rest()
