"""OpenAI /v1/chat/completions, prepared for the generation handler (handler.py; the
answer's shape is render_openai.OpenAIChat): sampling parameters, `n`, logprobs, SSE
streaming with usage; output constraints (`response_format`, and hearth's top-level `regex` / `grammar`
fields, which OpenAI clients send through `extra_body`); tools (`tools`, `tool_choice`,
earlier `tool_calls` and `role: "tool"` results rendered by the model's chat template; calls
parsed out of the output, streamed as tool-call deltas). Never touches tensors."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from hearth.engine.sampling_params import SamplingParams
from hearth.errors import InvalidParameterError
from hearth.serve.auth import require_key
from hearth.serve.constraints import combine, output_constraint, plan_tools, template_tool_calls
from hearth.serve.engine_request import EngineRequest
from hearth.serve.generation import (
    build_params,
    chat_prompt,
    check_max_tokens,
    no_vision,
    openai_sampling,
    request_max_tokens,
)
from hearth.serve.handler import handle, hold_model
from hearth.serve.model_pool import LoadedModel
from hearth.serve.render_openai import OpenAIChat
from hearth.serve.schemas_openai import (
    ChatCompletionRequest,
    ChatMessage,
)
from hearth.serve.state import ServerState, get_state
from hearth.serve.streaming import AbortingStream

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
) -> SamplingParams:
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


async def _prepare(
    model: LoadedModel, request_id: str, req: ChatCompletionRequest
) -> tuple[EngineRequest, OpenAIChat]:
    plan = plan_tools(model.tokenizer.chat_template, req.tools, req.tool_choice)
    constraint = output_constraint(
        response_format=req.response_format, regex=req.regex, grammar=req.grammar
    )
    messages = plan.messages(_messages(model, req.messages))
    prompt = await asyncio.to_thread(chat_prompt, model, messages, plan.tools)
    params = _chat_params(model, req, len(prompt), combine(plan, constraint))
    engine_request = EngineRequest(
        (tuple(prompt),), params, bool(req.stream), plan.format, plan.headers
    )
    renderer = OpenAIChat(
        model.name,
        model.tokenizer.decode,
        request_id,
        top_logprobs=req.top_logprobs or 0,
        tool_format=plan.format,
        include_usage=bool(req.stream_options and req.stream_options.include_usage),
    )
    return engine_request, renderer


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    req: ChatCompletionRequest, request: Request, state: ServerState = Depends(get_state)
) -> JSONResponse | AbortingStream:
    held = await hold_model(state, request, req.model)
    return await handle(request, state, held, lambda model, rid: _prepare(model, rid, req))
