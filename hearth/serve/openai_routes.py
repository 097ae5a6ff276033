"""The OpenAI-compatible API under /v1: chat/completions, completions (with echo + logprobs
for lm-eval), models, models/{id}, embeddings. Parses with schemas_openai, runs through
generation.Generation, answers in OpenAI's shapes (SSE for streams). Errors go to
serve/errors.py. Never touches tensors."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from hearth.engine.outputs import CompletionOutput, Logprob, RequestOutput
from hearth.errors import InvalidParameterError
from hearth.serve.auth import require_key
from hearth.serve.errors import stream_error_payload
from hearth.serve.generation import (
    Generation,
    build_params,
    chat_prompt,
    check_max_tokens,
    encode,
    first_then_rest,
    no_vision,
)
from hearth.serve.model_pool import LoadedModel
from hearth.serve.schemas_openai import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    EmbeddingRequest,
)
from hearth.serve.state import ServerState, get_state, new_request_id, note
from hearth.serve.streaming import AbortingStream

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], tags=["openai"])


# -- models -------------------------------------------------------------------------------
def _model_card(record: Any) -> dict[str, Any]:
    return {
        "id": record.name,
        "object": "model",
        "created": int(record.created.timestamp()),
        "owned_by": "hearth",
    }


@router.get("/models")
async def list_models(state: ServerState = Depends(get_state)) -> dict[str, Any]:
    records = await asyncio.to_thread(state.pool.store.list)
    return {"object": "list", "data": [_model_card(r) for r in records]}


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, state: ServerState = Depends(get_state)) -> dict[str, Any]:
    return _model_card(await state.pool.record(model_id))


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
            msg["tool_calls"] = m.tool_calls
        if m.tool_call_id:
            msg["tool_call_id"] = m.tool_call_id
        if m.name:
            msg["name"] = m.name
        out.append(msg)
    return out


def _chat_params(model: LoadedModel, req: ChatCompletionRequest, num_prompt: int) -> Any:
    from hearth.engine.structured import StructuredSpec

    max_tokens = req.max_completion_tokens or req.max_tokens
    name = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
    check_max_tokens(model, num_prompt, max_tokens, name)
    if req.top_logprobs and not req.logprobs:
        raise InvalidParameterError("top_logprobs", "top_logprobs: needs logprobs=true")
    return build_params(
        model,
        n=req.n,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        min_p=req.min_p,
        repetition_penalty=req.repetition_penalty,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        logit_bias=req.logit_bias,
        seed=req.seed,
        stop=req.stop,
        max_tokens=max_tokens if max_tokens is not None else model.max_model_len - num_prompt,
        logprobs=(req.top_logprobs or 0) if req.logprobs else None,
        structured=StructuredSpec.from_openai_response_format(req.response_format),
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


def _usage(gen: Generation, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": gen.num_prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": gen.num_prompt_tokens + completion,
    }


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    req: ChatCompletionRequest, request: Request, state: ServerState = Depends(get_state)
) -> JSONResponse | AbortingStream:
    rid = new_request_id()
    request.state.request_id = rid
    async with contextlib.AsyncExitStack() as stack:
        model = await stack.enter_async_context(state.pool.use(req.model))
        note(request, model=model.name)
        tools = req.tools if req.tool_choice != "none" else None
        prompt = await asyncio.to_thread(chat_prompt, model, _messages(model, req.messages), tools)
        params = _chat_params(model, req, len(prompt))
        gen = Generation(model, prompt, params, rid, state.admission, state.metrics)
        cid, created, k = f"chatcmpl-{rid}", int(time.time()), req.top_logprobs or 0
        if not req.stream:
            final = await gen.run()
            completion = sum(len(o.token_ids) for o in final.outputs)
            note(
                request,
                prompt_tokens=gen.num_prompt_tokens,
                output_tokens=completion,
                ttft_s=gen.ttft_s,
            )
            choices = [
                {
                    "index": o.index,
                    "message": {"role": "assistant", "content": o.text},
                    "logprobs": _chat_logprobs(model, o, 0, k),
                    "finish_reason": o.finish_reason,
                }
                for o in final.outputs
            ]
            return JSONResponse(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model.name,
                    "choices": choices,
                    "usage": _usage(gen, completion),
                    "system_fingerprint": None,
                }
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
                            yield _sse({**base, "choices": [first]})
                        if not o.delta_text and not o.finished:
                            continue
                        start = len(o.token_ids) - len(o.delta_token_ids)
                        choice = {
                            "index": o.index,
                            "delta": {"content": o.delta_text} if o.delta_text else {},
                            "logprobs": _chat_logprobs(model, o, start, k),
                            "finish_reason": o.finish_reason,
                        }
                        yield _sse({**base, "choices": [choice]})
                if usage_wanted and gen.final is not None:
                    completion = sum(len(o.token_ids) for o in gen.final.outputs)
                    yield _sse({**base, "choices": [], "usage": _usage(gen, completion)})
        except Exception as exc:
            yield _sse(stream_error_payload(exc, True, rid))
        note(
            request,
            prompt_tokens=gen.num_prompt_tokens,
            output_tokens=gen.num_output_tokens,
            ttft_s=gen.ttft_s,
        )
        yield _sse("[DONE]")

    return AbortingStream(body(), "text/event-stream")


# -- completions --------------------------------------------------------------------------
def _prompts(model: LoadedModel, prompt: Any) -> list[list[int]]:
    if isinstance(prompt, str):
        items: list[Any] = [prompt]
    elif prompt and isinstance(prompt[0], int):
        items = [prompt]
    else:
        items = list(prompt)
    if not items:
        raise InvalidParameterError(
            "prompt", "prompt: give a string, a list of strings or token ids"
        )
    return [encode(model, p) if isinstance(p, str) else [int(t) for t in p] for p in items]


def _completion_logprobs(
    model: LoadedModel,
    out: RequestOutput,
    o: CompletionOutput,
    echo: bool,
    k: int,
    keep_output: bool,
) -> dict[str, Any]:
    tokens: list[str] = []
    token_logprobs: list[float | None] = []
    top: list[dict[str, float] | None] = []

    def add(token_id: int, entries: dict[int, Logprob] | None) -> None:
        lp = entries.get(token_id) if entries else None
        text = lp.decoded if lp is not None and lp.decoded is not None else None
        tokens.append(text if text is not None else model.tokenizer.decode([token_id]))
        token_logprobs.append(None if lp is None else max(lp.logprob, -9999.0))
        if entries is None:
            top.append(None)
            return
        ranked = sorted(entries.items(), key=lambda kv: kv[1].rank or 0)
        top.append(
            {
                (lp2.decoded if lp2.decoded is not None else model.tokenizer.decode([t])): max(
                    lp2.logprob, -9999.0
                )
                for t, lp2 in ranked
                if lp2.rank is not None and lp2.rank <= k
            }
        )

    if echo:
        plp = out.prompt_logprobs or [None] * len(out.prompt_token_ids)
        for tok, entries in zip(out.prompt_token_ids, plp, strict=False):
            add(tok, entries)
    if keep_output and o.logprobs is not None:
        for tok, entries in zip(o.token_ids, o.logprobs, strict=False):
            add(tok, entries)
    offsets, at = [], 0
    for t in tokens:
        offsets.append(at)
        at += len(t)
    return {
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top,
        "text_offset": offsets,
    }


@router.post("/completions", response_model=None)
async def completions(
    req: CompletionRequest, request: Request, state: ServerState = Depends(get_state)
) -> JSONResponse | AbortingStream:
    if req.suffix:
        raise InvalidParameterError(
            "suffix",
            "suffix (fill-in-the-middle insertion) is not supported; put the whole "
            "text before the insertion point in `prompt` and leave `suffix` out",
        )
    if req.best_of is not None and req.best_of != (req.n or 1):
        raise InvalidParameterError("best_of", "best_of: only best_of == n is supported; use n")
    if req.max_tokens == 0 and not req.echo:
        raise InvalidParameterError("max_tokens", "max_tokens: 0 is only meaningful with echo=true")
    rid = new_request_id()
    request.state.request_id = rid
    async with contextlib.AsyncExitStack() as stack:
        model = await stack.enter_async_context(state.pool.use(req.model))
        note(request, model=model.name)
        prompts = _prompts(model, req.prompt)
        k = req.logprobs if req.logprobs is not None else 0
        keep_output = req.max_tokens != 0
        gens = []
        for i, prompt in enumerate(prompts):
            check_max_tokens(model, len(prompt), req.max_tokens or 1, "max_tokens")
            params = build_params(
                model,
                n=req.n,
                temperature=req.temperature,
                top_p=req.top_p,
                top_k=req.top_k,
                min_p=req.min_p,
                repetition_penalty=req.repetition_penalty,
                presence_penalty=req.presence_penalty,
                frequency_penalty=req.frequency_penalty,
                logit_bias=req.logit_bias,
                seed=req.seed,
                stop=req.stop,
                max_tokens=req.max_tokens or 1,
                logprobs=req.logprobs,
                prompt_logprobs=k if req.echo and req.logprobs is not None else None,
            )
            gens.append(
                Generation(model, prompt, params, f"{rid}-{i}", state.admission, state.metrics)
            )
        n = req.n or 1
        cid, created = f"cmpl-{rid}", int(time.time())

        def choice(i: int, out: RequestOutput, o: CompletionOutput) -> dict[str, Any]:
            text = o.text if keep_output else ""
            if req.echo:
                prompt_text = (
                    out.prompt
                    if out.prompt is not None
                    else model.tokenizer.decode(out.prompt_token_ids, skip_special_tokens=False)
                )
                text = prompt_text + text
            logprobs = (
                _completion_logprobs(model, out, o, bool(req.echo), k, keep_output)
                if req.logprobs is not None
                else None
            )
            return {
                "index": i * n + o.index,
                "text": text,
                "logprobs": logprobs,
                "finish_reason": o.finish_reason if keep_output else "length",
            }

        if not req.stream:
            finals = await asyncio.gather(*(g.run() for g in gens))
            choices = [choice(i, out, o) for i, out in enumerate(finals) for o in out.outputs]
            prompt_tokens = sum(g.num_prompt_tokens for g in gens)
            completion = (
                sum(len(o.token_ids) for f in finals for o in f.outputs) if keep_output else 0
            )
            note(
                request,
                prompt_tokens=prompt_tokens,
                output_tokens=completion,
                ttft_s=gens[0].ttft_s,
            )
            return JSONResponse(
                {
                    "id": cid,
                    "object": "text_completion",
                    "created": created,
                    "model": model.name,
                    "choices": choices,
                    "system_fingerprint": None,
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion,
                        "total_tokens": prompt_tokens + completion,
                    },
                }
            )
        first = await first_then_rest(gens[0].stream())
        usage_wanted = bool(req.stream_options and req.stream_options.include_usage)
        held = stack.pop_all()

    async def body() -> AsyncIterator[str]:
        base = {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": model.name,
            "system_fingerprint": None,
        }
        if usage_wanted:
            base["usage"] = None
        try:
            async with held:
                for i, gen in enumerate(gens):
                    stream = first if i == 0 else gen.stream()
                    async with contextlib.aclosing(stream):  # type: ignore[type-var]
                        async for out in stream:
                            for o in out.outputs:
                                if not o.delta_text and not o.finished:
                                    continue
                                c = {
                                    "index": i * n + o.index,
                                    "text": o.delta_text,
                                    "logprobs": None,
                                    "finish_reason": o.finish_reason,
                                }
                                yield _sse({**base, "choices": [c]})
                if usage_wanted:
                    np_ = sum(g.num_prompt_tokens for g in gens)
                    nc = sum(g.num_output_tokens for g in gens)
                    usage = {
                        "prompt_tokens": np_,
                        "completion_tokens": nc,
                        "total_tokens": np_ + nc,
                    }
                    yield _sse({**base, "choices": [], "usage": usage})
        except Exception as exc:
            yield _sse(stream_error_payload(exc, True, rid))
        note(
            request,
            prompt_tokens=sum(g.num_prompt_tokens for g in gens),
            output_tokens=sum(g.num_output_tokens for g in gens),
            ttft_s=gens[0].ttft_s,
        )
        yield _sse("[DONE]")

    return AbortingStream(body(), "text/event-stream")


# -- embeddings ---------------------------------------------------------------------------
def _encode_vector(vector: list[float], fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def shorten(vectors: list[list[float]], dimensions: int | None) -> list[list[float]]:
    """Matryoshka-style: keep the first `dimensions` values and re-normalise."""
    if dimensions is None:
        return vectors
    size = len(vectors[0]) if vectors else 0
    if dimensions > size:
        raise InvalidParameterError(
            "dimensions", f"dimensions: this model's embeddings have {size}; ask for at most {size}"
        )
    out = []
    for v in vectors:
        cut = v[:dimensions]
        norm = sum(x * x for x in cut) ** 0.5 or 1.0
        out.append([x / norm for x in cut])
    return out


@router.post("/embeddings")
async def embeddings(
    req: EmbeddingRequest, request: Request, state: ServerState = Depends(get_state)
) -> dict[str, Any]:
    request.state.request_id = new_request_id()
    async with state.pool.use(req.model) as model, state.admission.slot():
        note(request, model=model.name)
        items = _prompts(model, req.input)
        if len(items) > 2048:
            raise InvalidParameterError("input", "input: at most 2048 inputs per request")
        vectors, counts = await model.engine.embed(list(items))
    vectors = shorten(vectors, req.dimensions)
    note(request, prompt_tokens=sum(counts), output_tokens=0)
    return {
        "object": "list",
        "model": model.name,
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode_vector(v, req.encoding_format)}
            for i, v in enumerate(vectors)
        ],
        "usage": {"prompt_tokens": sum(counts), "total_tokens": sum(counts)},
    }
