"""OpenAI /v1 models, models/{id} and embeddings (pooled hidden states, normalised; float or
base64; `dimensions` shortens). Never touches tensors."""

from __future__ import annotations

import asyncio
import base64
import struct
from typing import Any

from fastapi import APIRouter, Depends, Request

from hearth.errors import InvalidParameterError
from hearth.serve.auth import require_key
from hearth.serve.schemas_openai import (
    EmbeddingRequest,
)
from hearth.serve.served_adapters import AdapterSpec
from hearth.serve.state import ServerState, get_state, new_request_id, note

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], tags=["openai"])


# -- models -------------------------------------------------------------------------------
def _model_card(record: Any) -> dict[str, Any]:
    card = {
        "id": record.name,
        "object": "model",
        "created": int(record.created.timestamp()),
        "owned_by": "hearth",
    }
    if str(record.source).startswith("tune:"):  # a base + adapter model (hearth tune)
        card["parent"] = str(record.source).removeprefix("tune:")
    return card


def _adapter_card(spec: AdapterSpec) -> dict[str, Any]:
    """A served LoRA adapter as vLLM lists one: its base in `parent`, its folder in `root`."""
    return {
        "id": spec.name,
        "object": "model",
        "created": int(spec.created.timestamp()),
        "owned_by": "hearth",
        "parent": spec.base,
        "root": str(spec.path),
    }


@router.get("/models")
async def list_models(state: ServerState = Depends(get_state)) -> dict[str, Any]:
    records = await asyncio.to_thread(state.pool.store.list)
    adapters = [_adapter_card(s) for s in state.pool.adapters.specs.values()]
    return {"object": "list", "data": [_model_card(r) for r in records] + adapters}


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, state: ServerState = Depends(get_state)) -> dict[str, Any]:
    spec = state.pool.adapters.get(model_id)
    if spec is not None:
        return _adapter_card(spec)
    return _model_card(await state.pool.record(model_id))


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


def _embed_inputs(given: Any) -> list[str | list[int]]:
    """OpenAI's `input`: a string, strings, one token-id list or several."""
    if isinstance(given, str):
        return [given]
    if given and isinstance(given[0], int):
        return [[int(t) for t in given]]
    items = [p if isinstance(p, str) else [int(t) for t in p] for p in given]
    if not items:
        raise InvalidParameterError("input", "input: give a string, strings or token ids")
    return items


@router.post("/embeddings")
async def embeddings(
    req: EmbeddingRequest, request: Request, state: ServerState = Depends(get_state)
) -> dict[str, Any]:
    request.state.request_id = new_request_id()
    kinds = ("embedding", "generation")  # a chat model embeds too (its pooled states)
    async with state.pool.use(req.model, kinds=kinds) as model, state.admission.slot():
        note(request, model=model.name)
        items = _embed_inputs(req.input)
        # tokenized off the event loop; OpenAI refuses over-long inputs rather than cutting
        vectors, counts = await model.engine.embed(items, truncate=req.truncate)
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
