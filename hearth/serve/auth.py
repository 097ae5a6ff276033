"""`Authorization: Bearer KEY` on /v1, /api, /metrics and the API docs. Auth is on when a
key existed at start, the server listens beyond loopback (server.py refuses that without a
key), or a key has been created since; once on, it stays on for the server's lifetime: with
no active key left every request gets 401 saying how to create one, so revoking the last
key never opens the server. A missing, unknown or revoked key gets 401 and counts against
the client address (after `max_auth_failures_per_minute` failures: 429, so keys cannot be
guessed at speed). The rate limit counts per key (per client address when auth is off).
Knows nothing of models."""

from __future__ import annotations

import asyncio

from fastapi import Depends, Request

from hearth.errors import AuthError
from hearth.serve.keys import has_active_keys, verify_key
from hearth.serve.state import ServerState, get_state

_GUESSING = "(too many requests without a valid key from this address)"


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _check(state: ServerState, token: str | None) -> str | None:
    """The key's name, None when auth is off; AuthError when refused (a worker thread)."""
    settings = state.settings
    if not state.auth_required:
        if not has_active_keys(settings):
            return None
        state.auth_required = True  # a key was created while serving: auth on for good
    if token is not None:
        key = verify_key(settings, token)
        if key is not None:
            return key.name
    if not has_active_keys(settings):
        raise AuthError(
            "this server requires an API key but none is active (the last one was revoked): "
            "the server operator creates one with `hearth keys create NAME`, and clients send "
            "`Authorization: Bearer KEY`"
        )
    if token is None:
        raise AuthError(
            "missing API key: send `Authorization: Bearer KEY` (the server operator "
            "creates keys with `hearth keys create NAME`)"
        )
    raise AuthError(
        "invalid or revoked API key; ask the server operator for a valid one "
        "(`hearth keys list` shows the active keys)"
    )


async def require_key(request: Request, state: ServerState = Depends(get_state)) -> None:
    """FastAPI dependency for every API route."""
    client = f"addr:{request.client.host if request.client else 'unknown'}"
    failures = state.auth_failures
    if failures is not None:
        failures.refuse_if_over(client, advice=_GUESSING)
    try:
        name = await asyncio.to_thread(_check, state, bearer(request))
    except AuthError:
        if failures is not None:
            failures.check(client)
        state.rate_limiter.check(client)  # failed requests count toward the rate limit too
        raise
    request.state.key_name = name
    state.rate_limiter.check(f"key:{name}" if name else client)
