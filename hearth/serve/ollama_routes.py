"""The Ollama-compatible API under /api, behind the API-key check (except `version`):
generate and chat (ollama_generate.py), tags, show, ps, pull, delete, copy
(ollama_models.py), embed and embeddings (ollama_embed.py), create (ollama_create.py),
blobs (ollama_blobs.py). Requests parse with schemas_ollama; generation runs through the
one handler (handler.py) and answers in Ollama's shapes (render_ollama.py); errors go to
serve/errors.py. Never touches tensors. (Included router by router, as
openai_routes explains.)"""

from __future__ import annotations

from fastapi import APIRouter

from hearth.serve import (
    ollama_blobs,
    ollama_create,
    ollama_embed,
    ollama_generate,
    ollama_models,
)

routers: tuple[APIRouter, ...] = (
    ollama_models.public,
    ollama_models.router,
    ollama_generate.router,
    ollama_embed.router,
    ollama_create.router,
    ollama_blobs.router,
)
