"""The OpenAI-compatible API under /v1, behind the API-key check: chat/completions
(openai_chat.py), completions (openai_completions.py), models and embeddings
(openai_models.py). Requests parse with schemas_openai; generation runs through the one
handler (handler.py) and answers in OpenAI's shapes (render_openai.py; SSE for streams);
errors go to serve/errors.py. Never touches tensors.

The routers are included into the app one by one, not nested in one router: FastAPI's
nested inclusion hides the matched route from the access-log middleware (metric labels)."""

from __future__ import annotations

from fastapi import APIRouter

from hearth.serve import lora_routes, openai_chat, openai_completions, openai_models

routers: tuple[APIRouter, ...] = (
    openai_models.router,
    lora_routes.router,
    openai_chat.router,
    openai_completions.router,
)
