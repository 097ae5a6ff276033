"""`GET /api/usage`: the usage ledger's totals (and per model, key or day), the most recent
requests, the price table the costs use and the energy settings. Behind the key when auth
is on. Knows nothing of models."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query

from hearth.serve.auth import require_key
from hearth.serve.pricing import load_price_table
from hearth.serve.state import ServerState, get_state
from hearth.serve.usage import parse_since, summarize, usage_records

router = APIRouter(prefix="/api", dependencies=[Depends(require_key)], tags=["usage"])


@router.get("/usage")
async def usage(
    since: str | None = Query(None, description="24h, 7d, 2w or an ISO date"),
    by: str | None = Query(None, description="model, key or day"),
    recent: int = Query(50, ge=0, le=1000, description="how many recent requests to list"),
    state: ServerState = Depends(get_state),
) -> dict[str, Any]:
    settings = state.settings

    def build() -> dict[str, Any]:
        start = parse_since(since)
        records = usage_records(settings, start)
        report = summarize(records, load_price_table(settings.price_table), by)
        report["since"] = start.isoformat() if start else None
        report["cpu_watts"] = settings.cpu_watts
        report["recent"] = [r.to_dict() for r in records[-recent:]] if recent else []
        return report

    return await asyncio.to_thread(build)
