"""Limits that keep one busy or hostile client from taking the server down: a request-body
size cap (an ASGI middleware, so an oversized body is refused before it is read whole; it
also refuses bodies that are not valid Unicode or nest too deep), a
per-key rate limit (sliding one-minute window), and admission of generation requests into
a bounded queue (beyond `max_running + max_queue` requests in flight: 503 + Retry-After).
Knows nothing of models or routes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth.errors import CapacityError, UserInputError
from hearth.serve.body_checks import MAX_JSON_DEPTH, has_lone_surrogate, too_deep
from hearth.serve.errors import BodyTooLarge, RateLimited, problem_for, response_for

# POST bodies here are model files (ollama_blobs.py): no size cap, never read whole
BLOBS_PATH = "/api/blobs/"


class RateLimiter:
    """At most `per_minute` requests per key in any 60 s window (0 = unlimited)."""

    def __init__(self, per_minute: int, window_s: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self._hits: dict[str, deque[float]] = {}

    def check(self, key: str, now: float | None = None) -> None:
        """Count one request for `key`; raise RateLimited (with Retry-After) when over."""
        self.refuse_if_over(key, now)
        if self.per_minute > 0:
            self._hits[key].append(time.monotonic() if now is None else now)

    def refuse_if_over(
        self,
        key: str,
        now: float | None = None,
        advice: str = "or ask the operator for a higher --rate-limit",
    ) -> None:
        """RateLimited when `key` has used up its window already (counts nothing)."""
        if self.per_minute <= 0:
            return
        now = time.monotonic() if now is None else now
        if len(self._hits) > 10_000:  # forget idle keys so the table cannot grow unbounded
            for k in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window_s]:
                del self._hits[k]
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(hits) >= self.per_minute:
            retry = hits[0] + self.window_s - now
            raise RateLimited(
                f"rate limit reached: {self.per_minute} requests per minute for this key or client; "
                f"retry in {retry:.0f} s {advice}",
                retry_after=retry,
            )


class Admission:
    """Generation requests in flight: up to `max_running` run, up to `max_queue` more wait
    (FIFO) for a slot; any beyond that are refused at once with CapacityError."""

    def __init__(self, max_running: int, max_queue: int) -> None:
        self.max_running = max_running
        self.max_queue = max_queue
        self.num_running = 0
        self.num_waiting = 0
        self._slots: asyncio.Semaphore | None = None  # made on the server's loop

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_running)
        if self.num_running + self.num_waiting >= self.max_running + self.max_queue:
            raise CapacityError(
                f"the server is busy: {self.num_running} requests running and "
                f"{self.num_waiting} waiting (the queue holds {self.max_queue}); retry shortly, "
                "or start the server with a larger --max-queue",
                retry_after=1.0,
            )
        self.num_waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.num_waiting -= 1
        self.num_running += 1
        try:
            yield
        finally:
            self.num_running -= 1
            self._slots.release()


class BodyLimitMiddleware:
    """413 for bodies over `max_bytes` (by Content-Length up front, else while reading a
    chunked body), 400 for bodies that are not valid Unicode text or nest too deep
    (body_checks). The body is read whole here (it is bounded) and handed on unchanged;
    later `receive` calls reach the client (disconnects stay visible to the routes)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: int | None) -> BodyTooLarge:
        got = f"{size} bytes" if size is not None else "more"
        return BodyTooLarge(
            f"the request body is {got} but the limit is {self.max_bytes} bytes; send less "
            "(split the input) or start the server with a larger --max-body-mb"
        )

    def _declared_size(self, scope: Scope) -> int | None:
        """Content-Length (-1 when unreadable), None when not given (chunked)."""
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return -1
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path.startswith(BLOBS_PATH) and scope.get("method") == "POST":
            # a model file, streamed to disk and checked against its digest there
            await self.app(scope, receive, send)
            return
        size = self._declared_size(scope)
        if size is not None and not 0 <= size <= self.max_bytes:
            error = self._too_large(size if size >= 0 else None)
            await response_for(problem_for(error), path)(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before sending it all
                return
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.max_bytes:
                await response_for(problem_for(self._too_large(seen)), path)(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        refusal = _body_refusal(body)
        if refusal is not None:
            await response_for(problem_for(refusal), path)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _body_refusal(body: bytes) -> UserInputError | None:
    if not body:
        return None
    if has_lone_surrogate(body):
        return UserInputError(
            "the request holds text that is not valid Unicode (a lone UTF-16 surrogate such "
            "as \\ud800); send valid UTF-8 text"
        )
    if too_deep(body):
        return UserInputError(
            f"the request body nests objects/arrays more than {MAX_JSON_DEPTH} levels deep; "
            "flatten it (e.g. a simpler response_format schema)"
        )
    return None
