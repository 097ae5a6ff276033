"""OpenAI /v1/chat/completions: sampling parameters, `n`, logprobs, SSE streaming with
usage; output constraints (`response_format`, and hearth's top-level `regex` / `grammar`
fields, which OpenAI clients send through `extra_body`); tools (`tools`, `tool_choice`,
earlier `tool_calls` and `role: "tool"` results rendered by the model's chat template; calls
parsed out of the output, streamed as tool-call deltas). Never touches tensors."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from hearth.engine.outputs import CompletionOutput, Logprob
from hearth.errors import InvalidParameterError
from hearth.serve.auth import require_key
from hearth.serve.constraints import combine, output_constraint, plan_tools, template_tool_calls
from hearth.serve.errors import stream_error_payload
from hearth.serve.generation import (
    Generation,
    build_params,
    chat_prompt,
    check_max_tokens,
    first_then_rest,
    no_vision,
    openai_sampling,
    request_max_tokens,
    unless_disconnected,
)
from hearth.serve.model_pool import LoadedModel
from hearth.serve.schemas_openai import (
    ChatCompletionRequest,
    ChatMessage,
)
from hearth.serve.state import ServerState, get_state, new_request_id, note
from hearth.serve.streaming import AbortingStream, sse
from hearth.serve.tool_output import (
    OpenAIToolStream,
    finish_reason,
    incomplete_flag,
    incomplete_header,
    openai_message,
)

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], tags=["openai"])


# -- chat ---------------------------------------------------------------------------------
def _messages(model: LoadedModel, messages: list[ChatMessage]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        content = m.content
        if isinstance(content, list):
            texts = []
            for part in content:
                if part.type == "image_url" or part.type == "input_audio" or part.type == "file":
                    raise no_vision(model)
                texts.append(part.text or part.refusal or "")
            content = "".join(texts)
        if content is None and not m.tool_calls:
            raise InvalidParameterError(
                f"messages[{i}].content", f"messages[{i}].content: give the message's text"
            )
        role = "system" if m.role == "developer" else m.role
        msg: dict[str, Any] = {"role": role, "content": content or ""}
        if m.tool_calls:
            msg["tool_calls"] = template_tool_calls(m.tool_calls, f"messages[{i}].tool_calls")
        if m.tool_call_id:
            msg["tool_call_id"] = m.tool_call_id
        if m.name:
            msg["name"] = m.name
        out.append(msg)
    return out


def _chat_params(
    model: LoadedModel, req: ChatCompletionRequest, num_prompt: int, structured: Any
) -> Any:
    max_tokens = req.max_completion_tokens or req.max_tokens
    name = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
    check_max_tokens(model, num_prompt, max_tokens, name)
    if req.top_logprobs and not req.logprobs:
        raise InvalidParameterError("top_logprobs", "top_logprobs: needs logprobs=true")
    return build_params(
        model,
        **openai_sampling(req),
        # unset: the model's default output limit, within what the context leaves; n of
        # them within what one request may ask for
        max_tokens=request_max_tokens(
            req.n or 1,
            max_tokens,
            min(model.llm.defaults.max_tokens, model.max_model_len - num_prompt),
            name,
        ),
        logprobs=(req.top_logprobs or 0) if req.logprobs else None,
        structured=structured,
    )


def _token_entry(model: LoadedModel, token_id: int, lp: Logprob) -> dict[str, Any]:
    text = lp.decoded if lp.decoded is not None else model.tokenizer.decode([token_id])
    return {"token": text, "logprob": max(lp.logprob, -9999.0), "bytes": list(text.encode())}


def _chat_logprobs(
    model: LoadedModel, out: CompletionOutput, start: int, k: int
) -> dict[str, Any] | None:
    if out.logprobs is None:
        return None
    content = []
    for pos in range(start, len(out.token_ids)):
        entries = out.logprobs[pos]
        tok = out.token_ids[pos]
        item = _token_entry(model, tok, entries[tok])
        ranked = sorted(entries.items(), key=lambda kv: kv[1].rank or 0)
        item["top_logprobs"] = [
            _token_entry(model, t, lp) for t, lp in ranked if lp.rank is not None and lp.rank <= k
        ]
        content.append(item)
    return {"content": content}


def _usage(gen: Generation, completion: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": gen.num_prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": gen.num_prompt_tokens + completion,
    }
    outs = gen.final.outputs if gen.final else []
    drafted = sum(o.draft_n for o in outs)
    if drafted:  # speculation: OpenAI's predicted-output counters say what it drafted
        accepted = sum(o.draft_n_accepted for o in outs)
        usage["completion_tokens_details"] = {
            "accepted_prediction_tokens": accepted,
            "rejected_prediction_tokens": drafted - accepted,
        }
    return usage


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    req: ChatCompletionRequest, request: Request, state: ServerState = Depends(get_state)
) -> JSONResponse | AbortingStream:
    rid = new_request_id()
    request.state.request_id = rid
    async with contextlib.AsyncExitStack() as stack:
        model = await stack.enter_async_context(state.pool.use(req.model))
        note(request, model=model.name)
        plan = plan_tools(model.tokenizer.chat_template, req.tools, req.tool_choice)
        constraint = output_constraint(
            response_format=req.response_format, regex=req.regex, grammar=req.grammar
        )
        structured = combine(plan, constraint)
        messages = plan.messages(_messages(model, req.messages))
        prompt = await asyncio.to_thread(chat_prompt, model, messages, plan.tools)
        params = _chat_params(model, req, len(prompt), structured)
        gen = Generation(model, prompt, params, rid, state.admission, state.metrics)
        cid, created, k = f"chatcmpl-{rid}", int(time.time()), req.top_logprobs or 0
        if not req.stream:
            try:
                final = await unless_disconnected(gen.run(), request.is_disconnected)
            finally:  # a hang-up still used what was generated until then
                note(
                    request,
                    prompt_tokens=gen.num_prompt_tokens,
                    output_tokens=gen.num_output_tokens,
                    ttft_s=gen.ttft_s,
                )
            completion = sum(len(o.token_ids) for o in final.outputs)
            note(request, output_tokens=completion)
            choices = []
            for o in final.outputs:
                message = openai_message(o.text, plan.format)
                reason = finish_reason(o.finish_reason, "tool_calls" in message)
                choices.append(
                    {
                        "index": o.index,
                        "message": message,
                        "logprobs": _chat_logprobs(model, o, 0, k),
                        "finish_reason": reason,
                        **incomplete_flag(o),
                    }
                )
            return JSONResponse(
                headers={**plan.headers, **incomplete_header(final.outputs)},
                content={
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model.name,
                    "choices": choices,
                    "usage": _usage(gen, completion),
                    "system_fingerprint": None,
                },
            )
        outputs = await first_then_rest(gen.stream())
        usage_wanted = bool(req.stream_options and req.stream_options.include_usage)
        held = stack.pop_all()  # the stream now owns the model until it ends

    async def body() -> AsyncIterator[str]:
        base = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model.name,
            "system_fingerprint": None,
        }
        if usage_wanted:
            base["usage"] = None
        started: set[int] = set()
        # one tool-call parser per choice (None: no tools, the text is the content)
        parsers: dict[int, OpenAIToolStream] = {}
        try:
            async with held, contextlib.aclosing(outputs):  # type: ignore[type-var]
                async for out in outputs:
                    for o in out.outputs:
                        if o.index not in started:
                            started.add(o.index)
                            first = {
                                "index": o.index,
                                "logprobs": None,
                                "finish_reason": None,
                                "delta": {"role": "assistant", "content": ""},
                            }
                            yield sse({**base, "choices": [first]})
                            if plan.format is not None:
                                parsers[o.index] = OpenAIToolStream(plan.format)
                        if not o.delta_text and not o.finished:
                            continue
                        start = len(o.token_ids) - len(o.delta_token_ids)
                        delta: dict[str, Any] = {}
                        reason = o.finish_reason
                        parser = parsers.get(o.index)
                        if parser is None:
                            if o.delta_text:
                                delta["content"] = o.delta_text
                        else:
                            content, calls = parser.feed(o.delta_text, o.finished)
                            if content:
                                delta["content"] = content
                            if calls:
                                delta["tool_calls"] = calls
                            reason = finish_reason(reason, parser.called)
                        logprobs = _chat_logprobs(model, o, start, k)
                        if not delta and not o.finished and logprobs is None:
                            continue  # the parser holds this text back (a call may start)
                        choice = {
                            "index": o.index,
                            "delta": delta,
                            "logprobs": logprobs,
                            "finish_reason": reason,
                            **incomplete_flag(o),
                        }
                        yield sse({**base, "choices": [choice]})
                if usage_wanted and gen.final is not None:
                    completion = sum(len(o.token_ids) for o in gen.final.outputs)
                    yield sse({**base, "choices": [], "usage": _usage(gen, completion)})
        except Exception as exc:
            yield sse(stream_error_payload(exc, True, rid))
        finally:  # also when the client stops the stream: what was generated so far counts
            note(
                request,
                prompt_tokens=gen.num_prompt_tokens,
                output_tokens=gen.num_output_tokens,
                ttft_s=gen.ttft_s,
            )
        yield sse("[DONE]")

    response = AbortingStream(body(), "text/event-stream")
    response.headers.update(plan.headers)
    return response
