"""/api/library: what the web UI's Library page shows beyond Ollama's /api/tags — each
model's license and its badge under the current policy (commercial OK / conditional / not
allowed), the model card (facts, template, license facts and the signals they came from),
the policy and the recorded acceptances. Behind the key when auth is on. Knows nothing of
tensors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Depends

from hearth.errors import PolicyError
from hearth.licenses import check_use, detection_from_stored, get_facts, load_policy
from hearth.licenses.acceptances import accepted_license_ids, list_acceptances
from hearth.serve.auth import require_key
from hearth.serve.state import ServerState, get_state

router = APIRouter(prefix="/api/library", dependencies=[Depends(require_key)], tags=["library"])


def _badge(record: Any, policy: Any, accepted: frozenset[str]) -> dict[str, str]:
    """`ok`: commercial use allowed; `conditional`: allowed with conditions (a user cap, an
    acceptance, an unknown license); `no`: the current policy refuses serving it."""
    detection = detection_from_stored(record.license_id, record.license_signals)
    facts = get_facts(detection.license_id)
    try:
        decision = check_use(detection, policy, "serve", accepted)
    except PolicyError as exc:
        return {"badge": "no", "label": "not allowed", "why": str(exc)}
    if facts.commercial_use == "yes" and not decision.warnings:
        return {"badge": "ok", "label": "commercial OK", "why": facts.commercial_clause}
    if facts.commercial_use == "no":
        why = f"{facts.name}: no commercial use ({facts.commercial_clause})"
        return {"badge": "conditional", "label": "non-commercial only", "why": why}
    why = "; ".join(decision.warnings) or facts.commercial_clause
    return {"badge": "conditional", "label": "conditional", "why": why}


@router.get("")
async def library(state: ServerState = Depends(get_state)) -> dict[str, Any]:
    settings, store = state.settings, state.pool.store

    def build() -> dict[str, Any]:
        policy = load_policy(settings)
        # a loaded model's usable context is what the server gave it (KV cache, --ctx)
        loaded = {m.name: m.max_model_len for m in state.pool.loaded()}
        models = []
        for r in store.list():
            accepted = accepted_license_ids(settings, r.digest)
            models.append(
                {
                    **r.summary(),
                    "loaded": r.name in loaded,
                    "serving_context_length": loaded.get(r.name),
                    **_badge(r, policy, accepted),
                }
            )
        acceptances = [
            {"model_digest": a.model_digest, "license_id": a.license_id, "use": a.use,
             "user": a.user, "accepted_at": a.accepted_at.isoformat()}
            for a in list_acceptances(settings)
        ]  # fmt: skip
        return {"models": models, "policy": policy.to_dict(), "acceptances": acceptances}

    return await asyncio.to_thread(build)


@router.get("/card/{name:path}")
async def card(name: str, state: ServerState = Depends(get_state)) -> dict[str, Any]:
    record = await state.pool.record(name)

    def build() -> dict[str, Any]:
        detection = detection_from_stored(record.license_id, record.license_signals)
        facts = get_facts(detection.license_id)
        return {
            **record.summary(),
            "template": record.chat_template or "",
            "license": facts.to_dict(),
            "license_signals": json.loads(record.license_signals or "[]"),
            **_badge(record, load_policy(state.settings),
                     accepted_license_ids(state.settings, record.digest)),
        }  # fmt: skip

    return await asyncio.to_thread(build)
