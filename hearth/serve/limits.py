"""Limits that keep one busy or hostile client from taking the server down: a request-body
size cap (an ASGI middleware, so an oversized body is refused before it is read whole), a
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

from hearth.errors import CapacityError
from hearth.serve.errors import BodyTooLarge, RateLimited, problem_for, response_for


class RateLimiter:
    """At most `per_minute` requests per key in any 60 s window (0 = unlimited)."""

    def __init__(self, per_minute: int, window_s: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self._hits: dict[str, deque[float]] = {}

    def check(self, key: str, now: float | None = None) -> None:
        """Count one request for `key`; raise RateLimited (with Retry-After) when over."""
        if self.per_minute <= 0:
            return
        now = time.monotonic() if now is None else now
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(hits) >= self.per_minute:
            retry = hits[0] + self.window_s - now
            raise RateLimited(
                f"rate limit reached: {self.per_minute} requests per minute for this key; "
                f"retry in {retry:.0f} s or ask the operator for a higher --rate-limit",
                retry_after=retry,
            )
        hits.append(now)
        if len(self._hits) > 10_000:  # forget idle keys so the table cannot grow unbounded
            for k in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window_s]:
                del self._hits[k]


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
    """413 for bodies over `max_bytes`: by Content-Length up front, else while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: int | None) -> BodyTooLarge:
        got = f"{size} bytes" if size is not None else "more"
        return BodyTooLarge(
            f"the request body is {got} but the limit is {self.max_bytes} bytes; send less "
            "(split the input) or start the server with a larger --max-body-mb"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = None
                if size is None or size > self.max_bytes:
                    await response_for(problem_for(self._too_large(size)), path)(
                        scope, receive, send
                    )
                    return
        seen = 0
        limit = self.max_bytes
        too_large = self._too_large

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise too_large(seen)
            return message

        await self.app(scope, limited, send)
