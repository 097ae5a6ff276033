"""vLLM's runtime LoRA routes under /v1, behind the API key: `POST /v1/load_lora_adapter`
({"lora_name", "lora_path"}, plus hearth's optional "base_model" when several models are
loaded) and `POST /v1/unload_lora_adapter` ({"lora_name"}), answering as vLLM does (plain
text). An adapter loaded here is a `model` name in every API from then on. The pool does
the work (model_pool.py); never touches tensors."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from hearth.serve.auth import require_key
from hearth.serve.state import ServerState, get_state

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], tags=["lora"])

_Name = Field(min_length=1, max_length=200, pattern=r"^\S+$")


class LoadLoraRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # vLLM's lora_int_id and the like
    lora_name: str = _Name
    lora_path: str = Field(min_length=1, max_length=4096)
    base_model: str | None = None


class UnloadLoraRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    lora_name: str = _Name


@router.post("/load_lora_adapter", response_class=PlainTextResponse)
async def load_lora_adapter(req: LoadLoraRequest, state: ServerState = Depends(get_state)) -> str:
    await state.pool.load_adapter(req.lora_name, req.lora_path, req.base_model)
    return f"Success: LoRA adapter '{req.lora_name}' added successfully."


@router.post("/unload_lora_adapter", response_class=PlainTextResponse)
async def unload_lora_adapter(
    req: UnloadLoraRequest, state: ServerState = Depends(get_state)
) -> str:
    await state.pool.unload_adapter(req.lora_name)
    return f"Success: LoRA adapter '{req.lora_name}' removed successfully."
