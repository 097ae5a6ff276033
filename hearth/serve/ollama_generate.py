"""Ollama /api/generate and /api/chat, prepared for the generation handler (handler.py;
the answer's shape is render_ollama's): NDJSON streams (or one object) with Ollama's
durations, `options`, `format`, `keep_alive`, `raw`, `template` / `system` overrides;
hearth's `regex` / `grammar` extension fields (top level, or in `options`, which the
official clients pass through); chat `tools` rendered by the model's template and calls
returned as `message.tool_calls`. Never touches tensors."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request

from hearth.engine.sampling_params import SamplingParams
from hearth.errors import ContextLengthError, InvalidParameterError
from hearth.serve.auth import require_key
from hearth.serve.constraints import output_constraint, plan_tools, template_tool_calls
from hearth.serve.engine_request import EngineRequest
from hearth.serve.generation import build_params, chat_prompt, encode, no_vision
from hearth.serve.handler import HeldModel, handle, hold_model
from hearth.serve.model_pool import LoadedModel
from hearth.serve.ollama_models import now_iso
from hearth.serve.render_ollama import OllamaChat, OllamaGenerate
from hearth.serve.schemas_ollama import (
    ChatRequest,
    GenerateRequest,
    Options,
    parse_keep_alive,
)
from hearth.serve.state import ServerState, get_state

if TYPE_CHECKING:
    from hearth.engine.structured import StructuredSpec

router = APIRouter(prefix="/api", dependencies=[Depends(require_key)], tags=["ollama"])


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


def _params(
    model: LoadedModel, options: Options | None, structured: Any, num_prompt: int
) -> SamplingParams:
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
    knobs = ("temperature", "top_k", "top_p", "typical_p", "repeat_last_n")
    values = {k: getattr(o, k, None) for k in knobs}
    values["repetition_penalty"] = o.repeat_penalty
    return build_params(
        model,
        **values,
        min_p=o.min_p,
        speculate=o.speculative,
        seed=o.seed,
        stop=o.stop,
        presence_penalty=o.presence_penalty,
        frequency_penalty=o.frequency_penalty,
        max_tokens=max_tokens,
        structured=structured,
    )


async def _load_only(held: HeldModel, keep: Any, piece: dict[str, Any]) -> dict[str, Any]:
    """The answer to a request without a prompt: Ollama's way to load (or unload) a model."""
    await held.release()
    reason = "load"
    if parse_keep_alive(keep) == 0:
        reason = "unload"
    return {
        "model": held.model.name,
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


async def _generate_prompt(model: LoadedModel, req: GenerateRequest) -> list[int]:
    """The prompt's token ids: as given (`raw`), through the request's template, the
    model's chat template, or plain system + prompt text; after any `context`."""
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
    return [int(t) for t in req.context or ()] + ids


async def _prepare_generate(
    model: LoadedModel, req: GenerateRequest
) -> tuple[EngineRequest, OllamaGenerate]:
    ids = await _generate_prompt(model, req)
    params = _params(model, req.options, _constraint(req), len(ids))
    return EngineRequest((tuple(ids),), params, req.stream), OllamaGenerate(model.name)


@router.post("/generate", response_model=None)
async def generate(
    req: GenerateRequest, request: Request, state: ServerState = Depends(get_state)
) -> Any:
    if req.suffix:
        raise InvalidParameterError(
            "suffix",
            "suffix (fill-in-the-middle) is not supported; "
            "send the text before the insertion point as the prompt",
        )
    held = await hold_model(state, request, req.model, parse_keep_alive(req.keep_alive))
    if req.images:
        await held.release()
        raise no_vision(held.model)
    if not req.prompt and not req.context:
        return await _load_only(held, req.keep_alive, {"response": ""})
    return await handle(request, state, held, lambda model, _: _prepare_generate(model, req))


async def _prepare_chat(model: LoadedModel, req: ChatRequest) -> tuple[EngineRequest, OllamaChat]:
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
    engine_request = EngineRequest((tuple(ids),), params, req.stream, plan.format, plan.headers)
    return engine_request, OllamaChat(model.name, plan.format)


@router.post("/chat", response_model=None)
async def chat(req: ChatRequest, request: Request, state: ServerState = Depends(get_state)) -> Any:
    held = await hold_model(state, request, req.model, parse_keep_alive(req.keep_alive))
    if any(m.images for m in req.messages):
        await held.release()
        raise no_vision(held.model)
    if not req.messages:
        empty = {"message": {"role": "assistant", "content": ""}}
        return await _load_only(held, req.keep_alive, empty)
    return await handle(request, state, held, lambda model, _: _prepare_chat(model, req))
