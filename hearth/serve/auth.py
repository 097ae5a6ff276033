"""`Authorization: Bearer KEY` on /v1 and /api. Auth is on when the database holds at least
one active key (binding a non-loopback address requires one; see server.py); then a missing,
unknown or revoked key gets 401. The rate limit counts per key (per client address when auth
is off). Knows nothing of models."""

from __future__ import annotations

import asyncio

from fastapi import Depends, Request

from hearth.errors import AuthError
from hearth.serve.keys import has_active_keys, verify_key
from hearth.serve.state import ServerState, get_state


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def require_key(request: Request, state: ServerState = Depends(get_state)) -> None:
    """FastAPI dependency for every API route."""
    settings = state.settings
    token = bearer(request)

    def check() -> str | None:
        if not has_active_keys(settings):
            return None
        if token is None:
            raise AuthError(
                "missing API key: send `Authorization: Bearer KEY` (the server operator "
                "creates keys with `hearth keys create NAME`)"
            )
        key = verify_key(settings, token)
        if key is None:
            raise AuthError(
                "invalid or revoked API key; ask the server operator for a valid one "
                "(`hearth keys list` shows the active keys)"
            )
        return key.name

    name = await asyncio.to_thread(check)
    request.state.key_name = name
    client = request.client.host if request.client else "unknown"
    state.rate_limiter.check(f"key:{name}" if name else f"addr:{client}")
