"""/api/conversations: the web UI's stored chats — list (with search), create, read,
update (rename, new messages), delete, export as JSON or Markdown. Behind the key when
auth is on; each key sees only its own. Knows nothing of models."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from hearth.serve.auth import require_key
from hearth.serve.conversations import (
    create_conversation,
    delete_conversation,
    get_conversation,
    list_conversations,
    update_conversation,
)
from hearth.serve.state import ServerState, get_state

router = APIRouter(
    prefix="/api/conversations", dependencies=[Depends(require_key)], tags=["conversations"]
)


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=1_000_000)
    stats: dict[str, float | int | str | None] | None = None


class ConversationBody(BaseModel):
    title: str | None = Field(None, max_length=200)
    model: str | None = Field(None, max_length=200)
    system: str | None = Field(None, max_length=100_000)
    params: dict[str, float | int | bool | str | None] | None = None
    messages: list[Message] | None = Field(None, max_length=10_000)

    def fields(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def _key(request: Request) -> str | None:
    return getattr(request.state, "key_name", None)


@router.get("")
async def list_all(
    request: Request,
    q: str = Query("", max_length=200, description="text in the title or a message"),
    state: ServerState = Depends(get_state),
) -> dict[str, Any]:
    found = await asyncio.to_thread(list_conversations, state.settings, _key(request), q)
    return {"conversations": [c.summary() for c in found]}


@router.post("", status_code=201)
async def create(
    body: ConversationBody, request: Request, state: ServerState = Depends(get_state)
) -> dict[str, Any]:
    made = await asyncio.to_thread(
        create_conversation, state.settings, _key(request), **body.fields()
    )
    return made.to_dict()


@router.get("/{conversation_id}")
async def read(
    conversation_id: str, request: Request, state: ServerState = Depends(get_state)
) -> dict[str, Any]:
    found = await asyncio.to_thread(
        get_conversation, state.settings, _key(request), conversation_id
    )
    return found.to_dict()


@router.put("/{conversation_id}")
async def update(
    conversation_id: str,
    body: ConversationBody,
    request: Request,
    state: ServerState = Depends(get_state),
) -> dict[str, Any]:
    changed = await asyncio.to_thread(
        update_conversation, state.settings, _key(request), conversation_id, **body.fields()
    )
    return changed.to_dict()


@router.delete("/{conversation_id}", status_code=204)
async def delete(
    conversation_id: str, request: Request, state: ServerState = Depends(get_state)
) -> Response:
    await asyncio.to_thread(delete_conversation, state.settings, _key(request), conversation_id)
    return Response(status_code=204)


@router.get("/{conversation_id}/export")
async def export(
    conversation_id: str,
    request: Request,
    format: Literal["json", "md"] = Query("json"),
    state: ServerState = Depends(get_state),
) -> Response:
    found = await asyncio.to_thread(
        get_conversation, state.settings, _key(request), conversation_id
    )
    filename = f"conversation-{found.id}.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if format == "md":
        return Response(found.to_markdown(), media_type="text/markdown", headers=headers)
    return JSONResponse(found.to_dict(), headers=headers)
