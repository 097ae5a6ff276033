"""The `x-hearth-replica` response header: which replica(s) answered. The middleware puts a
fresh holder in a context variable for each request; ReplicaEngine writes the replica's
name into it when its stream starts (contexts copied into the handler's tasks share the
holder), and the header goes out with the response's start, which for a stream comes after
its first output (generation.first_then_rest)."""

from __future__ import annotations

from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-hearth-replica"
_replicas: ContextVar[list[str] | None] = ContextVar("hearth_replicas", default=None)


def note_replica(replica: str) -> None:
    """Record that `replica` answers (part of) the current request."""
    holder = _replicas.get()
    if holder is not None and replica not in holder:
        holder.append(replica)


class ReplicaHeaderMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        holder: list[str] = []
        token = _replicas.set(holder)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and holder:
                headers = [*message.get("headers", []), (HEADER, ",".join(holder).encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            _replicas.reset(token)
