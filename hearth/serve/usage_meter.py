"""Measures each model request for the usage ledger and records it once the response has
been sent: `CpuMeter` shares the process's CPU time among the requests running at the same
time, and `UsageLedgerMiddleware` writes one `serve_usage` row per request that named a
model (the routes `note` the model, tokens and TTFT; usage.py stores them). Knows nothing of
models or tensors."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth.config import Settings
from hearth.serve.usage import UsageRecord, record_usage

log = logging.getLogger("hearth.serve.usage")


class CpuMeter:
    """CPU-seconds per request. The engine runs every request in one process, so a
    request's own CPU time cannot be read from the OS; instead the process CPU time that
    passes between two events (a request starting or ending) is split evenly among the
    requests active in that interval. Time while none is active is nobody's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[int, float] = {}  # token -> CPU-seconds so far
        self._last = time.process_time()
        self._next = 0

    def _advance(self) -> None:
        now = time.process_time()
        if self._active:
            share = (now - self._last) / len(self._active)
            for token in self._active:
                self._active[token] += share
        self._last = now

    def start(self) -> int:
        with self._lock:
            self._advance()
            self._next += 1
            self._active[self._next] = 0.0
            return self._next

    def stop(self, token: int) -> float:
        with self._lock:
            self._advance()
            return self._active.pop(token, 0.0)


class UsageLedgerMiddleware:
    """Times every HTTP request and records those that used a model (the route put
    `model` in the request state). The energy estimate is `cpu_watts` (the package's power
    with every core busy) times the share of the cores the request's CPU time used."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.meter = CpuMeter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        when = datetime.now(UTC)
        token = self.meter.start()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            cpu_s = self.meter.stop(token)
            state: dict[str, Any] = scope.get("state", {})
            if state.get("model"):
                record = self._record(scope, state, status, when, started, cpu_s)
                try:
                    await asyncio.to_thread(record_usage, self.settings, record)
                except Exception:  # the answer was sent; a ledger failure must not hide it
                    log.exception("could not record usage of request %s", record.request_id)

    def _record(
        self,
        scope: Scope,
        state: dict[str, Any],
        status: int,
        when: datetime,
        started: float,
        cpu_s: float,
    ) -> UsageRecord:
        ttft = state.get("ttft_s")
        energy_wh = self.settings.cpu_watts * cpu_s / self.settings.threads / 3600
        return UsageRecord(
            time=when,
            request_id=str(state.get("request_id", "")),
            key=state.get("key_name"),
            model=str(state["model"]),
            path=str(scope.get("path", "")),
            status=status,
            prompt_tokens=int(state.get("prompt_tokens") or 0),
            output_tokens=int(state.get("output_tokens") or 0),
            ttft_s=ttft if isinstance(ttft, float) else None,
            duration_s=time.perf_counter() - started,
            cpu_s=cpu_s,
            energy_wh=energy_wh,
        )
