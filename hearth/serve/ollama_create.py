"""Ollama's POST /api/create: a new store model from a base name, or from blobs uploaded
before (`files`, `adapters`: {file name: digest}, ollama_blobs.py), plus a template, system
prompt, parameters, few-shot messages and licenses (hearth.store.create; the base's blobs are
shared). Files on the server's disk are never named by a client. Never touches tensors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from starlette.responses import StreamingResponse

from hearth.errors import InvalidParameterError, UserInputError
from hearth.serve.auth import require_key
from hearth.serve.schemas_ollama import CreateRequest
from hearth.serve.state import ServerState, get_state
from hearth.store.create import create_from_blobs
from hearth.store.modelfile import ROLES, Modelfile, parse, parse_parameter

router = APIRouter(prefix="/api", dependencies=[Depends(require_key)], tags=["ollama"])
NDJSON = "application/x-ndjson"


def modelfile_of(req: CreateRequest) -> Modelfile:
    """The Modelfile a request describes (400s name the field)."""
    if req.quantize:
        raise InvalidParameterError(
            "quantize", "quantize is not done by /api/create; run `hearth quantize` instead"
        )
    mf = parse(req.modelfile) if req.modelfile else Modelfile(from_="")
    if req.from_:
        mf.from_ = req.from_
    if req.files and mf.from_:
        raise InvalidParameterError(
            "files", "give from (a stored model) or files (uploaded blobs), not both"
        )
    if not mf.from_ and not req.files:
        raise InvalidParameterError(
            "from", "from is required: the name of a stored model (or files: uploaded blobs)"
        )
    local = mf.from_.startswith(("/", ".", "~")) or mf.from_.endswith(".gguf")
    if local or mf.adapters:
        raise UserInputError(
            "a client names stored models, never files on the server; create FROM a stored "
            "model name, or run `hearth create` on the server's machine"
        )
    if req.template is not None:
        mf.template = req.template
    if req.system is not None:
        mf.system = req.system
    if req.license is not None:
        mf.licenses = [req.license] if isinstance(req.license, str) else list(req.license)
    for key, value in (req.parameters or {}).items():
        try:
            mf.parameters[key] = parse_parameter(key, value)
        except ValueError as exc:
            raise InvalidParameterError(f"parameters.{key}", str(exc)) from None
    if "stop" in mf.parameters and not isinstance(mf.parameters["stop"], list):
        mf.parameters["stop"] = [mf.parameters["stop"]]
    for i, m in enumerate(req.messages or []):
        if m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise InvalidParameterError(
                f"messages[{i}]", f"messages[{i}] needs a role ({', '.join(ROLES)}) and content"
            )
        mf.messages.append({"role": m["role"], "content": m["content"]})
    return mf


@router.post("/create", response_model=None)
async def create(req: CreateRequest, state: ServerState = Depends(get_state)) -> Any:
    mf = modelfile_of(req)
    store = state.pool.store
    if req.files or req.adapters:  # blobs the client uploaded, by digest
        record = await asyncio.to_thread(
            create_from_blobs, store, req.model, mf, req.files, req.adapters
        )
    else:  # nothing is read from the server's disk: relative paths were refused above
        record = await asyncio.to_thread(store.create, req.model, mf, Path("/nonexistent"))
    statuses = [
        {"status": f"using existing layer {record.digest}"},
        {"status": "writing manifest"},
        {"status": "success"},
    ]
    if not req.stream:
        return {"status": "success"}

    async def body() -> AsyncIterator[str]:
        for item in statuses:
            yield json.dumps(item) + "\n"

    return StreamingResponse(body(), media_type=NDJSON)
