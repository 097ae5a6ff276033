"""OpenAI /v1/completions, prepared for the generation handler (handler.py; the answer's
shape is render_openai.OpenAICompletions): prompt as text, token ids or lists of them; `echo` with `logprobs`
returns prompt-token logprobs (lm-eval's loglikelihood scoring); `suffix` refused. Never
touches tensors."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from hearth.errors import InvalidParameterError
from hearth.serve.auth import require_key
from hearth.serve.constraints import output_constraint
from hearth.serve.engine_request import EngineRequest
from hearth.serve.generation import (
    build_params,
    check_max_tokens,
    encode,
    openai_sampling,
    request_max_tokens,
)
from hearth.serve.handler import handle, hold_model
from hearth.serve.model_pool import LoadedModel
from hearth.serve.render_openai import OpenAICompletions
from hearth.serve.schemas_openai import (
    CompletionRequest,
)
from hearth.serve.state import ServerState, get_state
from hearth.serve.streaming import AbortingStream

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


def _refuse_unsupported(req: CompletionRequest) -> None:
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


async def _prepare(
    model: LoadedModel, request_id: str, req: CompletionRequest
) -> tuple[EngineRequest, OpenAICompletions]:
    # tokenizing a large body takes seconds: off the event loop (/health stays fast)
    prompts = await asyncio.to_thread(token_prompts, model, req.prompt)
    n, max_tokens = req.n or 1, req.max_tokens or 1
    # every prompt's n completions count toward the request's total
    request_max_tokens(len(prompts) * n, max_tokens, 0, "max_tokens")
    check_max_tokens(model, len(prompts[0]), max_tokens, "max_tokens")
    params = build_params(
        model,
        **openai_sampling(req),
        max_tokens=max_tokens,
        logprobs=req.logprobs,
        prompt_logprobs=(req.logprobs or 0) if req.echo and req.logprobs is not None else None,
        structured=output_constraint(
            response_format=req.response_format, regex=req.regex, grammar=req.grammar
        ),
    )
    for prompt in prompts[1:]:
        check_max_tokens(model, len(prompt), max_tokens, "max_tokens")
    keep_output = req.max_tokens != 0
    engine_request = EngineRequest(
        tuple(tuple(p) for p in prompts),
        params,
        stream=bool(req.stream),
        discard_output=not keep_output,
    )
    renderer = OpenAICompletions(
        model.name,
        model.tokenizer.decode,
        request_id,
        n=n,
        echo=bool(req.echo),
        logprobs=req.logprobs,
        keep_output=keep_output,
        include_usage=bool(req.stream_options and req.stream_options.include_usage),
    )
    return engine_request, renderer


@router.post("/completions", response_model=None)
async def completions(
    req: CompletionRequest, request: Request, state: ServerState = Depends(get_state)
) -> JSONResponse | AbortingStream:
    _refuse_unsupported(req)
    held = await hold_model(state, request, req.model)
    return await handle(request, state, held, lambda model, rid: _prepare(model, rid, req))
