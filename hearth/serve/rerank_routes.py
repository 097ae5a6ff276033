"""/v1/rerank and /rerank: a query and documents in, each document's relevance score out, in
the Jina / Cohere form llama.cpp and vLLM serve (`results` sorted best first, each with its
`index` in the request, `relevance_score` and, asked for, the `document`). Runs on rerank
(cross-encoder) models only. Never touches tensors."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from hearth.errors import InvalidParameterError
from hearth.serve.auth import require_key
from hearth.serve.schemas_openai import RerankRequest
from hearth.serve.state import ServerState, get_state, new_request_id, note

router = APIRouter(dependencies=[Depends(require_key)], tags=["rerank"])


def _texts(documents: list[str | dict[str, Any]]) -> list[str]:
    texts = []
    for i, doc in enumerate(documents):
        text = doc if isinstance(doc, str) else doc.get("text")
        if not isinstance(text, str):
            raise InvalidParameterError(
                "documents", f'documents[{i}]: give a string or an object with a "text" string'
            )
        texts.append(text)
    if not texts:
        raise InvalidParameterError("documents", "documents: give at least one document")
    return texts


async def _rerank(req: RerankRequest, request: Request, state: ServerState) -> dict[str, Any]:
    request.state.request_id = new_request_id()
    texts = _texts(req.documents)
    async with state.pool.use(req.model, kinds=("rerank",)) as model, state.admission.slot():
        note(request, model=model.name)
        scores, counts = await model.engine.rerank(req.query, texts, truncate=req.truncate)  # type: ignore[attr-defined]
    note(request, prompt_tokens=sum(counts), output_tokens=0)
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[: req.top_n or len(scores)]
    results = []
    for i in order:
        one: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
        if req.return_documents:
            one["document"] = {"text": texts[i]}
        results.append(one)
    return {
        "id": request.state.request_id,
        "model": model.name,
        "results": results,
        "usage": {"prompt_tokens": sum(counts), "total_tokens": sum(counts)},
    }


@router.post("/v1/rerank")
async def rerank_v1(
    req: RerankRequest, request: Request, state: ServerState = Depends(get_state)
) -> dict[str, Any]:
    return await _rerank(req, request, state)


@router.post("/rerank")
async def rerank(
    req: RerankRequest, request: Request, state: ServerState = Depends(get_state)
) -> dict[str, Any]:
    return await _rerank(req, request, state)
