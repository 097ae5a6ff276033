"""Ollama's /api/blobs/:digest: HEAD says whether the store holds a blob (200 / 404), POST
stores the request body as that blob, streamed to disk and hashed on the way; bytes that
hash to another digest are dropped (400), so a stored blob is always what its name says.
`/api/create` then names uploaded blobs in `files` / `adapters` (ollama_create.py). Never
touches tensors; the body skips the JSON body limit (limits.py), as a model file is large."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from hearth.errors import InvalidParameterError
from hearth.serve.auth import require_key
from hearth.serve.state import ServerState, get_state

router = APIRouter(prefix="/api", dependencies=[Depends(require_key)], tags=["ollama"])
# Ollama writes `sha256:<hex>` (and its files `sha256-<hex>`); both name the same blob
_DIGEST = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")


def blob_digest(text: str) -> str:
    """`sha256:<hex>` (lower case) from the route's digest, or 400 naming the form."""
    match = _DIGEST.fullmatch(text)
    if match is None:
        raise InvalidParameterError(
            "digest", f"digest: {text!r} is not a blob digest; use sha256:<64 hex digits>"
        )
    return "sha256:" + match.group(1).lower()


@router.head("/blobs/{digest}")
async def has_blob(digest: str, state: ServerState = Depends(get_state)) -> Response:
    found = await asyncio.to_thread(state.pool.store.blobs.has, blob_digest(digest))
    return Response(status_code=200 if found else 404)


@router.post("/blobs/{digest}")
async def create_blob(
    digest: str, request: Request, state: ServerState = Depends(get_state)
) -> Response:
    expected = blob_digest(digest)
    blobs = state.pool.store.blobs
    if await asyncio.to_thread(blobs.has, expected):
        # already there (Ollama answers 200); the body is read and dropped so the client,
        # which sends it whatever, is not cut off mid-upload
        async for _ in request.stream():
            pass
        return Response(status_code=200)
    body = _BodyReader(request.stream(), asyncio.get_running_loop())
    total = int(request.headers.get("content-length") or 0)
    await asyncio.to_thread(blobs.add_stream, body, total, None, expected)
    return Response(status_code=201)


class _BodyReader:
    """The request body as the blocking `read()` BlobStore.add_stream calls from its
    thread: each read waits for the next chunk the server's loop receives (b"" at the end),
    so a large upload is never held in memory whole."""

    def __init__(self, chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._chunks = chunks
        self._loop = loop

    def read(self, size: int = -1, /) -> bytes:
        return asyncio.run_coroutine_threadsafe(self._next(), self._loop).result()

    async def _next(self) -> bytes:
        async for chunk in self._chunks:
            if chunk:
                return chunk
        return b""
