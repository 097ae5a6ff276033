"""Ollama /api/generate and /api/chat: NDJSON streams (or one object) with Ollama's
durations, `options`, `format`, `keep_alive`, `raw`, `template` / `system` overrides;
hearth's `regex` / `grammar` extension fields (top level, or in `options`, which the
official clients pass through); chat `tools` rendered by the model's template and calls
returned as `message.tool_calls`. Never touches tensors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from hearth.errors import ContextLengthError, InvalidParameterError
from hearth.serve.auth import require_key
from hearth.serve.constraints import output_constraint, plan_tools, template_tool_calls
from hearth.serve.errors import stream_error_payload
from hearth.serve.generation import (
    Generation,
    build_params,
    chat_prompt,
    encode,
    first_then_rest,
    no_vision,
    unless_disconnected,
)
from hearth.serve.model_pool import LoadedModel
from hearth.serve.ollama_models import now_iso
from hearth.serve.schemas_ollama import (
    ChatRequest,
    GenerateRequest,
    Options,
    parse_keep_alive,
)
from hearth.serve.state import ServerState, get_state, new_request_id, note
from hearth.serve.streaming import AbortingStream
from hearth.serve.tool_output import OllamaToolStream, incomplete_flag, ollama_message

if TYPE_CHECKING:
    from hearth.engine.outputs import CompletionOutput
    from hearth.engine.structured import StructuredSpec

router = APIRouter(prefix="/api", dependencies=[Depends(require_key)], tags=["ollama"])
NDJSON = "application/x-ndjson"


# -- generation ---------------------------------------------------------------------------
def _constraint(req: GenerateRequest | ChatRequest) -> StructuredSpec | None:
    """`format`, or hearth's `regex` / `grammar` (top level or in options; not both)."""
    values = {}
    for key in ("regex", "grammar"):
        top, opt = getattr(req, key), getattr(req.options, key, None) if req.options else None
        if top is not None and opt is not None:
            raise InvalidParameterError(
                key, f"{key}: given both at the top level and in options; give it once"
            )
        values[key] = top if top is not None else opt
    return output_constraint(format=req.format or None, **values)


def _params(model: LoadedModel, options: Options | None, structured: Any, num_prompt: int) -> Any:
    o = options or Options()
    limit = model.max_model_len
    if o.num_ctx is not None:
        if o.num_ctx > model.max_model_len:
            raise InvalidParameterError(
                "options.num_ctx",
                f"options.num_ctx: {o.num_ctx} is more than this server's context for "
                f"'{model.name}' ({model.max_model_len} tokens); use at most that, or restart "
                "the server with a larger --ctx",
            )
        limit = o.num_ctx
    if num_prompt >= limit:
        raise ContextLengthError(num_prompt, limit)
    room = limit - num_prompt
    # unset: the model's default limit; Ollama's -1 / -2 ask for "until the context is full"
    if o.num_predict is None:
        max_tokens = min(model.llm.defaults.max_tokens, room)
    else:
        max_tokens = room if o.num_predict <= 0 else min(o.num_predict, room)
    # what the request leaves None takes the model's defaults (build_params)
    values = {k: getattr(o, k, None) for k in ("temperature", "top_k", "top_p")}
    values["repetition_penalty"] = o.repeat_penalty
    return build_params(
        model,
        **values,
        min_p=o.min_p,
        seed=o.seed,
        stop=o.stop,
        presence_penalty=o.presence_penalty,
        frequency_penalty=o.frequency_penalty,
        max_tokens=max_tokens,
        structured=structured,
    )


def _final(gen: Generation, loaded_s: float, started: float) -> dict[str, Any]:
    end = gen.ended or time.perf_counter()
    first = gen.first_token_at or end
    return {
        "done": True,
        "done_reason": gen.final.outputs[0].finish_reason if gen.final else "stop",
        "total_duration": int((end - started) * 1e9),
        "load_duration": int(loaded_s * 1e9),
        "prompt_eval_count": gen.num_prompt_tokens,
        "prompt_eval_duration": int((first - gen.started) * 1e9),
        "eval_count": gen.num_output_tokens,
        "eval_duration": int((end - first) * 1e9),
        **(incomplete_flag(gen.final.outputs[0]) if gen.final else {}),
        **(_draft_counts(gen.final.outputs[0]) if gen.final else {}),
    }


def _draft_counts(out: CompletionOutput) -> dict[str, int]:
    """llama.cpp's speculation counters, when the answer was speculated."""
    if not out.draft_n:
        return {}
    return {"draft_n": out.draft_n, "draft_n_accepted": out.draft_n_accepted}


Feed = Callable[[str, bool], list[dict[str, Any]]]


@dataclass(frozen=True)
class _Shape:
    """How an endpoint puts text in its objects: `whole(text)` the fields of a plain
    answer; `stream()` a fresh Feed, (delta text, finished) -> the fields of each object
    to send now; `empty` the text fields of a stream's last object."""

    whole: Callable[[str], dict[str, Any]]
    stream: Callable[[], Feed]
    empty: dict[str, Any]


def _generate_shape() -> _Shape:
    return _Shape(
        lambda text: {"response": text},
        lambda: lambda delta, _: [{"response": delta}] if delta else [],
        {"response": ""},
    )


def _chat_shape(tool_format: str | None) -> _Shape:
    def stream() -> Feed:
        if tool_format is None:
            return lambda delta, _: (
                [{"message": {"role": "assistant", "content": delta}}] if delta else []
            )
        parser = OllamaToolStream(tool_format)

        def feed(delta: str, finished: bool) -> list[dict[str, Any]]:
            content, calls = parser.feed(delta, finished)
            if not content and not calls:
                return []
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if calls:
                message["tool_calls"] = calls
            return [{"message": message}]

        return feed

    return _Shape(
        lambda text: {"message": ollama_message(text, tool_format)},
        stream,
        {"message": {"role": "assistant", "content": ""}},
    )


def _request_id(request: Request) -> str:
    """A new request id, also kept on the request for the access log."""
    rid = new_request_id()
    request.state.request_id = rid
    return rid


async def _respond(
    request: Request,
    gen: Generation,
    held: contextlib.AsyncExitStack,
    stream: bool,
    shape: _Shape,
    started: float,
    loaded_s: float,
    extra_final: Any,
    headers: dict[str, str] | None = None,
) -> Any:
    """Run `gen`, answering with one object or an NDJSON stream shaped by `shape`;
    `extra_final(final)` adds the last object's own fields."""
    rid, name = gen.request_id, gen.model.name
    if not stream:
        try:
            async with held:
                final = await unless_disconnected(gen.run(), request.is_disconnected)
        finally:  # a hang-up still used what was generated until then
            note(
                request,
                prompt_tokens=gen.num_prompt_tokens,
                output_tokens=gen.num_output_tokens,
                ttft_s=gen.ttft_s,
            )
        body = {
            "model": name,
            "created_at": now_iso(),
            **shape.whole(final.outputs[0].text),
            **_final(gen, loaded_s, started),
            **extra_final(final),
        }
        return JSONResponse(body, headers=headers)
    try:
        outputs = await first_then_rest(gen.stream())
    except BaseException:
        await held.aclose()
        raise

    async def lines() -> AsyncIterator[str]:
        feed = shape.stream()
        try:
            async with held, contextlib.aclosing(outputs):  # type: ignore[type-var]
                async for out in outputs:
                    o = out.outputs[0]
                    for fields in feed(o.delta_text, out.finished):
                        head = {"model": name, "created_at": now_iso()}
                        yield json.dumps({**head, **fields, "done": False}) + "\n"
                    if out.finished:
                        last = {
                            "model": name,
                            "created_at": now_iso(),
                            **shape.empty,
                            **_final(gen, loaded_s, started),
                            **extra_final(out),
                        }
                        yield json.dumps(last) + "\n"
        except Exception as exc:
            yield stream_error_payload(exc, False, rid) + "\n"
        finally:  # also when the client stops the stream: what was generated so far counts
            note(
                request,
                prompt_tokens=gen.num_prompt_tokens,
                output_tokens=gen.num_output_tokens,
                ttft_s=gen.ttft_s,
            )

    response = AbortingStream(lines(), NDJSON)
    response.headers.update(headers or {})
    return response


async def enter_model(
    state: ServerState,
    request: Request,
    name: str,
    keep_alive: Any,
    kinds: tuple[str, ...] = ("generation",),
) -> tuple[contextlib.AsyncExitStack, LoadedModel, float]:
    keep = parse_keep_alive(keep_alive)
    stack = contextlib.AsyncExitStack()
    try:
        record = await state.pool.record(name)
        was_loaded = record.name in state.pool.models
        model = await stack.enter_async_context(state.pool.use(name, keep, kinds))
    except BaseException:
        await stack.aclose()
        raise
    note(request, model=model.name)
    return stack, model, 0.0 if was_loaded else model.load_duration_s


async def _load_only(
    stack: contextlib.AsyncExitStack, model: LoadedModel, keep: Any, piece: dict[str, Any]
) -> dict[str, Any]:
    await stack.aclose()
    reason = "load"
    if parse_keep_alive(keep) == 0:
        reason = "unload"
    return {
        "model": model.name,
        "created_at": now_iso(),
        **piece,
        "done": True,
        "done_reason": reason,
    }


def _ollama_template(template: str, system: str | None, prompt: str) -> str:
    """Ollama's Go templates, in the subset a request can override here."""
    text = template.replace("{{ .System }}", system or "").replace("{{ .Prompt }}", prompt)
    text = text.replace("{{ .Response }}", "")
    if "{{" in text:
        raise InvalidParameterError(
            "template",
            "template: only the placeholders {{ .System }}, {{ .Prompt }} and {{ .Response }} "
            "are supported in a request's template; use `raw: true` with a fully built prompt "
            "for anything else",
        )
    return text


@router.post("/generate", response_model=None)
async def generate(
    req: GenerateRequest, request: Request, state: ServerState = Depends(get_state)
) -> Any:
    started = time.perf_counter()
    if req.suffix:
        raise InvalidParameterError(
            "suffix",
            "suffix (fill-in-the-middle) is not supported; "
            "send the text before the insertion point as the prompt",
        )
    stack, model, loaded_s = await enter_model(state, request, req.model, req.keep_alive)
    if req.images:
        await stack.aclose()
        raise no_vision(model)
    if not req.prompt and not req.context:
        return await _load_only(stack, model, req.keep_alive, {"response": ""})
    try:
        if req.raw:
            ids = await asyncio.to_thread(encode, model, req.prompt)
        elif req.template is not None:
            text = _ollama_template(req.template, req.system, req.prompt)
            ids = await asyncio.to_thread(encode, model, text)
        elif model.tokenizer.has_chat_template:
            messages = [{"role": "system", "content": req.system}] if req.system else []
            messages.append({"role": "user", "content": req.prompt})
            ids = await asyncio.to_thread(chat_prompt, model, messages)
        else:
            text = (req.system + "\n\n" if req.system else "") + req.prompt
            ids = await asyncio.to_thread(encode, model, text)
        if req.context:
            ids = [int(t) for t in req.context] + ids
        params = _params(model, req.options, _constraint(req), len(ids))
    except BaseException:
        await stack.aclose()
        raise
    return await _respond(
        request,
        Generation(model, ids, params, _request_id(request), state.admission, state.metrics),
        stack,
        req.stream,
        _generate_shape(),
        started,
        loaded_s,
        lambda final: {"context": list(final.prompt_token_ids) + list(final.outputs[0].token_ids)},
    )


@router.post("/chat", response_model=None)
async def chat(req: ChatRequest, request: Request, state: ServerState = Depends(get_state)) -> Any:
    started = time.perf_counter()
    stack, model, loaded_s = await enter_model(state, request, req.model, req.keep_alive)
    if any(m.images for m in req.messages):
        await stack.aclose()
        raise no_vision(model)
    if not req.messages:
        return await _load_only(
            stack, model, req.keep_alive, {"message": {"role": "assistant", "content": ""}}
        )
    try:
        # Ollama has no tool_choice: the model decides ("auto")
        plan = plan_tools(model.tokenizer.chat_template, req.tools, None)
        messages: list[dict[str, Any]] = []
        for i, m in enumerate(req.messages):
            msg: dict[str, Any] = {"role": m.role, "content": m.content}
            if m.tool_calls:
                msg["tool_calls"] = template_tool_calls(m.tool_calls, f"messages[{i}].tool_calls")
            if m.tool_name:
                msg["name"] = m.tool_name
            messages.append(msg)
        ids = await asyncio.to_thread(chat_prompt, model, plan.messages(messages), plan.tools)
        params = _params(model, req.options, _constraint(req), len(ids))
    except BaseException:
        await stack.aclose()
        raise
    return await _respond(
        request,
        Generation(model, ids, params, _request_id(request), state.admission, state.metrics),
        stack,
        req.stream,
        _chat_shape(plan.format),
        started,
        loaded_s,
        lambda final: {},
        plan.headers,
    )
