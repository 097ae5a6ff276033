"""The streaming response both surfaces use (SSE on /v1, NDJSON on /api). Unlike a plain
StreamingResponse it watches the connection while it waits for the engine: when the client
hangs up it cancels the body and closes its iterator at once, which aborts the engine
request and frees its KV blocks before the next step. Knows nothing of models."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class AbortingStream(StreamingResponse):
    def __init__(self, body: AsyncIterator[str], media_type: str) -> None:
        super().__init__(body, media_type=media_type, headers={"Cache-Control": "no-cache"})
        self._body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    while True:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            tg.cancel_scope.cancel()
                            return

                async def write() -> None:
                    with contextlib.suppress(OSError):  # the socket went away under a send
                        await self.stream_response(send)
                    tg.cancel_scope.cancel()

                tg.start_soon(watch)
                tg.start_soon(write)
        finally:
            # runs on hang-up too: the generator chain's `finally`s abort the engine request
            with anyio.CancelScope(shield=True):
                aclose = getattr(self._body, "aclose", None)
                if aclose is not None:
                    await aclose()


def sse(data: dict[str, Any] | str) -> str:
    """One Server-Sent Events message (`data: [DONE]` when given the string)."""
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
