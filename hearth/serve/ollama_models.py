"""Ollama /api model listing and store changes: version, tags, show, ps, delete, copy, pull
(streamed progress objects). Never touches tensors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from hearth import __version__
from hearth.serve.auth import require_key
from hearth.serve.constraints import tool_mode
from hearth.serve.errors import stream_error_payload
from hearth.serve.schemas_ollama import (
    CopyRequest,
    DeleteRequest,
    PullRequest,
    ShowRequest,
)
from hearth.serve.state import ServerState, get_state
from hearth.store.create import layers_of, modelfile_text

router = APIRouter(prefix="/api", dependencies=[Depends(require_key)], tags=["ollama"])
public = APIRouter(prefix="/api", tags=["ollama"])  # no API key
NDJSON = "application/x-ndjson"
# what Ollama reports as the expiry of a model that never unloads
NEVER = datetime(2318, 1, 1, tzinfo=UTC)


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@public.get("/version")
async def version() -> dict[str, str]:
    return {"version": __version__}


# -- listing ------------------------------------------------------------------------------
def _size_label(n: int) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def _details(record: Any) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": record.format,
        "family": record.architecture,
        "families": [record.architecture],
        "parameter_size": _size_label(record.parameter_count),
        "quantization_level": record.quantization,
    }


@router.get("/tags")
async def tags(state: ServerState = Depends(get_state)) -> dict[str, Any]:
    records = await asyncio.to_thread(state.pool.store.list)
    return {
        "models": [
            {
                "name": r.name,
                "model": r.name,
                "modified_at": r.created.isoformat(),
                "size": r.size,
                "digest": r.digest.removeprefix("sha256:"),
                "details": _details(r),
            }
            for r in records
        ]
    }


@router.post("/show")
async def show(req: ShowRequest, state: ServerState = Depends(get_state)) -> dict[str, Any]:
    r = await state.pool.record(req.model)
    arch = r.architecture
    info: dict[str, Any] = {
        "general.architecture": arch,
        "general.parameter_count": r.parameter_count,
        "general.license": r.license_id,
    }
    if r.context_length:
        info[f"{arch}.context_length"] = r.context_length
    capabilities = ["completion", "embedding"] + (["chat", "tools"] if r.has_chat_template else [])
    manifest = await asyncio.to_thread(state.pool.store.manifest, r.name)
    layers = layers_of(manifest)
    details = _details(r) | {"parent_model": layers.get("from", "")}
    shown = {
        "modelfile": modelfile_text(r.name, manifest),
        "parameters": _parameters_text(layers.get("parameters", {})),
        # a created model's TEMPLATE as written (Go); otherwise the Jinja template it renders
        "template": layers.get("template") or r.chat_template or "",
        "license": "\n".join(layers.get("licenses", [])) or r.license_id or "unknown",
        "details": details,
        "model_info": info,
        "capabilities": capabilities,
        # how tools reach the model: its template, or hearth's default tool-use prompt
        "hearth_tool_mode": tool_mode(r.chat_template) if r.has_chat_template else None,
        "modified_at": r.created.isoformat(),
    }
    if "system" in layers:
        shown["system"] = layers["system"]
    if "messages" in layers:
        shown["messages"] = layers["messages"]
    return shown


def _parameters_text(parameters: dict[str, Any]) -> str:
    """Ollama's `parameters` string: one `name value` line each, stop values quoted."""
    lines = []
    for name, value in parameters.items():
        for v in value if isinstance(value, list) else [value]:
            lines.append(f"{name:<30} {json.dumps(v) if name == 'stop' else v}")
    return "\n".join(lines)


@router.get("/ps")
async def ps(state: ServerState = Depends(get_state)) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": m.name,
                "model": m.name,
                "size": m.size_bytes,
                "digest": m.record.digest.removeprefix("sha256:"),
                "details": _details(m.record),
                "expires_at": (m.expires_at or NEVER).isoformat(),
                "size_vram": 0,
                "context_length": m.max_model_len,
                # hearth's own: the KV pool this model was given (tokens it holds)
                "kv_cache": {
                    "bytes": m.llm.engine.kv_cache_bytes,
                    "tokens": m.llm.engine.block_manager.num_blocks
                    * m.llm.engine.block_manager.block_size,
                },
            }
            for m in state.pool.loaded()
        ]
    }


# -- store changes ------------------------------------------------------------------------
@router.delete("/delete")
async def delete(req: DeleteRequest, state: ServerState = Depends(get_state)) -> Response:
    record = await state.pool.record(req.model)
    await state.pool.unload(record.name)
    await asyncio.to_thread(state.pool.store.remove, [record.name])
    return Response(status_code=200)


@router.post("/copy")
async def copy(req: CopyRequest, state: ServerState = Depends(get_state)) -> Response:
    await asyncio.to_thread(state.pool.store.copy, req.source, req.destination)
    return Response(status_code=200)


@router.post("/pull", response_model=None)
async def pull(req: PullRequest, state: ServerState = Depends(get_state)) -> Any:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
    last: dict[str, int] = {}

    def progress(label: str, done: int, total: int) -> None:
        # about one object per percent per stage, not one per chunk
        step = max(total // 100, 1) if total else 1
        if label in last and done < total and done - last[label] < step:
            return
        last[label] = done
        item: dict[str, Any] = {"status": label}
        if total:
            item |= {"total": total, "completed": done}
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def run() -> None:
        try:
            # a client names models and sources, never files on the server's disk
            state.pool.store.pull(req.model, progress=progress, local_paths=False)
            loop.call_soon_threadsafe(queue.put_nowait, None)
        except BaseException as exc:
            loop.call_soon_threadsafe(queue.put_nowait, exc)

    task = loop.run_in_executor(None, run)
    first = await queue.get()  # failures known at once (bad name, policy) get a status code
    if isinstance(first, BaseException):
        raise first
    if not req.stream:
        item: dict[str, Any] | BaseException | None = first
        while item is not None:
            if isinstance(item, BaseException):
                raise item
            item = await queue.get()
        return {"status": "success"}

    async def body() -> AsyncIterator[str]:
        item: dict[str, Any] | BaseException | None = first
        while item is not None:
            if isinstance(item, BaseException):
                yield stream_error_payload(item, False) + "\n"
                return
            yield json.dumps(item) + "\n"
            item = await queue.get()
        await task
        yield json.dumps({"status": "success"}) + "\n"

    # a pull is not aborted when the client leaves: the store finishes or cleans up itself
    from starlette.responses import StreamingResponse

    return StreamingResponse(body(), media_type=NDJSON)
