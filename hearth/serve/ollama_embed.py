"""Ollama /api/embed and /api/embeddings. Never touches tensors."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request

from hearth.errors import InvalidParameterError
from hearth.serve.auth import require_key
from hearth.serve.handler import hold_model
from hearth.serve.model_pool import LoadedModel
from hearth.serve.openai_models import shorten
from hearth.serve.schemas_ollama import (
    EmbeddingsRequest,
    EmbedRequest,
    parse_keep_alive,
)
from hearth.serve.state import ServerState, get_state, note

router = APIRouter(prefix="/api", dependencies=[Depends(require_key)], tags=["ollama"])


# -- embeddings ---------------------------------------------------------------------------
async def _embed(
    state: ServerState,
    request: Request,
    name: str,
    keep_alive: Any,
    texts: list[str],
    truncate: bool,
) -> tuple[LoadedModel, list[list[float]], int, float]:
    # a chat model embeds too (its pooled states); a reranker does not
    kinds = ("embedding", "generation")
    held = await hold_model(state, request, name, parse_keep_alive(keep_alive), kinds)
    model = held.model
    async with held.stack, state.admission.slot():
        # tokenized off the event loop; truncate (Ollama's default) cuts to the context
        vectors, counts = await model.engine.embed(list(texts), truncate=truncate)
    note(request, prompt_tokens=sum(counts), output_tokens=0)
    return model, vectors, sum(counts), held.loaded_s


@router.post("/embed")
async def embed(
    req: EmbedRequest, request: Request, state: ServerState = Depends(get_state)
) -> dict[str, Any]:
    started = time.perf_counter()
    texts = [req.input] if isinstance(req.input, str) else list(req.input)
    if not texts:
        raise InvalidParameterError("input", "input: give a string or a list of strings")
    model, vectors, count, loaded_s = await _embed(
        state, request, req.model, req.keep_alive, texts, req.truncate
    )
    return {
        "model": model.name,
        "embeddings": shorten(vectors, req.dimensions),
        "total_duration": int((time.perf_counter() - started) * 1e9),
        "load_duration": int(loaded_s * 1e9),
        "prompt_eval_count": count,
    }


@router.post("/embeddings")
async def embeddings(
    req: EmbeddingsRequest, request: Request, state: ServerState = Depends(get_state)
) -> dict[str, Any]:
    if not req.prompt:
        raise InvalidParameterError("prompt", "prompt: give the text to embed")
    _, vectors, _, _ = await _embed(state, request, req.model, req.keep_alive, [req.prompt], True)
    return {"embedding": vectors[0]}
