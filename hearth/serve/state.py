"""ServerState: what every route needs (settings, options, the model pool, the bounded
queue, the rate limiters, metrics, whether auth is on), held on `app.state.hearth`; `get_state` is the FastAPI
dependency that hands it over, and `new_request_id` names requests. Knows nothing of
routes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from fastapi import Request

from hearth.config import Settings
from hearth.serve.eval_jobs import EvalJobs
from hearth.serve.limits import Admission, RateLimiter
from hearth.serve.metrics import ServerMetrics
from hearth.serve.model_pool import ModelPool
from hearth.serve.options import ServeOptions


@dataclass
class ServerState:
    settings: Settings
    options: ServeOptions
    pool: ModelPool
    admission: Admission
    rate_limiter: RateLimiter
    metrics: ServerMetrics
    # set once auth is on (a key existed at start, a non-loopback bind, or a key was created
    # since): from then on every API request needs an active key, even after the last one
    # is revoked, so revoking keys can never switch authentication off
    auth_required: bool = False
    # requests with a missing or wrong key, per client address (key guessing)
    auth_failures: RateLimiter | None = None
    # evaluation runs started from the web UI (one at a time)
    evals: EvalJobs = field(default_factory=EvalJobs)


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.hearth
    return state


def new_request_id() -> str:
    return secrets.token_hex(8)


def note(request: Request, **values: object) -> None:
    """Facts for the access-log line (model, tokens, ttft)."""
    for key, value in values.items():
        setattr(request.state, key, value)
