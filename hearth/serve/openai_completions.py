"""OpenAI /v1/completions: prompt as text, token ids or lists of them; `echo` with `logprobs`
returns prompt-token logprobs (lm-eval's loglikelihood scoring); `suffix` refused. Never
touches tensors."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from hearth.engine.outputs import CompletionOutput, Logprob, RequestOutput
from hearth.errors import InvalidParameterError
from hearth.serve.auth import require_key
from hearth.serve.constraints import output_constraint
from hearth.serve.errors import stream_error_payload
from hearth.serve.generation import (
    Generation,
    build_params,
    check_max_tokens,
    encode,
    first_then_rest,
    openai_sampling,
    request_max_tokens,
    unless_disconnected,
)
from hearth.serve.model_pool import LoadedModel
from hearth.serve.schemas_openai import (
    CompletionRequest,
)
from hearth.serve.state import ServerState, get_state, new_request_id, note
from hearth.serve.streaming import AbortingStream, sse
from hearth.serve.tool_output import incomplete_flag

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], tags=["openai"])


# -- completions --------------------------------------------------------------------------
def token_prompts(model: LoadedModel, prompt: Any) -> list[list[int]]:
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
        # tokenizing a large body takes seconds: off the event loop (/health stays fast)
        prompts = await asyncio.to_thread(token_prompts, model, req.prompt)
        k = req.logprobs if req.logprobs is not None else 0
        keep_output = req.max_tokens != 0
        structured = output_constraint(
            response_format=req.response_format, regex=req.regex, grammar=req.grammar
        )
        gens = []
        # every prompt's n completions count toward the request's total
        request_max_tokens(len(prompts) * (req.n or 1), req.max_tokens or 1, 0, "max_tokens")
        for i, prompt in enumerate(prompts):
            check_max_tokens(model, len(prompt), req.max_tokens or 1, "max_tokens")
            params = build_params(
                model,
                **openai_sampling(req),
                max_tokens=req.max_tokens or 1,
                logprobs=req.logprobs,
                prompt_logprobs=k if req.echo and req.logprobs is not None else None,
                structured=structured,
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
                **incomplete_flag(o),
            }

        if not req.stream:
            finals = await unless_disconnected(
                asyncio.gather(*(g.run() for g in gens)), request.is_disconnected
            )
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
                                yield sse({**base, "choices": [c]})
                if usage_wanted:
                    np_ = sum(g.num_prompt_tokens for g in gens)
                    nc = sum(g.num_output_tokens for g in gens)
                    usage = {
                        "prompt_tokens": np_,
                        "completion_tokens": nc,
                        "total_tokens": np_ + nc,
                    }
                    yield sse({**base, "choices": [], "usage": usage})
        except Exception as exc:
            yield sse(stream_error_payload(exc, True, rid))
        finally:  # also when the client stops the stream: what was generated so far counts
            note(
                request,
                prompt_tokens=sum(g.num_prompt_tokens for g in gens),
                output_tokens=sum(g.num_output_tokens for g in gens),
                ttft_s=gens[0].ttft_s,
            )
        yield sse("[DONE]")

    return AbortingStream(body(), "text/event-stream")
