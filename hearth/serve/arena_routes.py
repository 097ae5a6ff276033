"""The arena API under /api/arena (the web UI's arena page uses it):

- `POST /api/arena/battles` {"prompt", "models"?: [...], "max_tokens"?, "temperature"?}:
  draws two models (from `models`, default every stored one), answers as Server-Sent
  Events: `event: battle` {"battle_id"} first, then `event: a` / `event: b` {"text": delta}
  as each answer streams, then `event: done` {"battle_id", "votable": true}; an error
  mid-stream is `event: error` {"error": {...}}. The model names are not sent.
- `POST /api/arena/battles/{id}/turns` {"prompt"}: a further turn with the same pair.
- `POST /api/arena/battles/{id}/vote` {"winner": "a" | "b" | "tie" | "both_bad", "voter"?}:
  409 for an unknown battle, when already voted or still answering; the answer names
  the two models.
- `GET /api/arena/battles/{id}`: the battle, names only once voted.
- `GET /api/arena/leaderboard?style_control=&both_bad=`: the ratings as JSON.

The battles themselves run in hearth.arena (engines in, events out); this file only maps
HTTP onto it. Never touches tensors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from hearth.arena.battles import Battle, BattleStore
from hearth.arena.duel import ArenaSession, Contender
from hearth.arena.pair_sampler import draw_pair
from hearth.arena.ratings import RatingConfig, leaderboard
from hearth.engine.sampling_params import SamplingParams
from hearth.errors import ConflictError, NotFoundError, UserInputError
from hearth.serve.auth import require_key
from hearth.serve.errors import Problem, problem_for, response_for
from hearth.serve.model_pool import LoadedModel
from hearth.serve.state import ServerState, get_state
from hearth.serve.streaming import AbortingStream

router = APIRouter(prefix="/api/arena", dependencies=[Depends(require_key)], tags=["arena"])

VOTES = {"a": "model_a", "b": "model_b", "tie": "tie", "both_bad": "tie (bothbad)"}


class BattleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1)
    models: list[str] | None = None
    max_tokens: int = Field(256, ge=1, le=8192)
    temperature: float = Field(0.7, ge=0.0, le=2.0)


class TurnRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1)
    max_tokens: int = Field(256, ge=1, le=8192)
    temperature: float = Field(0.7, ge=0.0, le=2.0)


class VoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    winner: str
    voter: str = Field("", max_length=200)


def _store(state: ServerState) -> BattleStore:
    return BattleStore(state.settings.db_url)


def _contender(model: LoadedModel) -> Contender:
    return Contender(model.name, model.engine, model.tokenizer, model.max_model_len)


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def _conflict(exc: ConflictError | NotFoundError, request: Request) -> JSONResponse:
    return response_for(
        Problem(409, str(exc), "invalid_request_error", "conflict"), request.url.path
    )


async def _stream(
    state: ServerState,
    store: BattleStore,
    names: tuple[str, str],
    params: SamplingParams,
    open_turn: Callable[[], str],
    prompt: str | None,
) -> AbortingStream:
    """Load both models (errors here still get a status code), then open the turn in the
    database (`open_turn` returns the battle id: nothing is stored for a battle whose
    models could not be loaded), then stream it."""
    stack = contextlib.AsyncExitStack()
    try:
        a = await stack.enter_async_context(state.pool.use(names[0]))
        b = await stack.enter_async_context(state.pool.use(names[1]))
        battle_id = await asyncio.to_thread(open_turn)
    except BaseException:
        await stack.aclose()
        raise
    session = ArenaSession(store, params)

    async def body() -> AsyncIterator[str]:
        async with stack, state.admission.slot():
            yield _event("battle", {"battle_id": battle_id})
            try:
                async for delta in session.answer(battle_id, _contender(a), _contender(b), prompt):
                    yield _event(delta.side, {"text": delta.text})
            except Exception as exc:
                problem = problem_for(exc)
                error = {"message": problem.message, "status": problem.status}
                yield _event("error", {"error": error})
                return
            yield _event("done", {"battle_id": battle_id, "votable": True})

    return AbortingStream(body(), media_type="text/event-stream")


def _params(max_tokens: int, temperature: float) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=temperature)


@router.post("/battles", response_model=None)
async def new_battle(req: BattleRequest, state: ServerState = Depends(get_state)) -> AbortingStream:
    store = _store(state)
    if req.models is not None:
        # the store's own spelling ("smollm2" -> "smollm2:latest"); 404 for an unknown name
        records = [await state.pool.record(name) for name in req.models]
        candidates = list(dict.fromkeys(r.name for r in records))
    else:
        candidates = [r.name for r in await asyncio.to_thread(state.pool.store.list)]
    if len(candidates) < 2:
        raise UserInputError(
            f"a battle needs at least two models, got {len(candidates)}; name two or more "
            "stored models in `models`"
        )
    outcomes = await asyncio.to_thread(store.rated)
    name_a, name_b = draw_pair(candidates, outcomes, rng=random.Random())
    params = _params(req.max_tokens, req.temperature)

    def open_turn() -> str:
        return store.start(name_a, name_b, req.prompt)

    return await _stream(state, store, (name_a, name_b), params, open_turn, None)


@router.post("/battles/{battle_id}/turns", response_model=None)
async def next_turn(
    battle_id: str, req: TurnRequest, request: Request, state: ServerState = Depends(get_state)
) -> AbortingStream | JSONResponse:
    store = _store(state)
    battle = await asyncio.to_thread(store.get, battle_id)  # 404 for an unknown id
    params = _params(req.max_tokens, req.temperature)

    def open_turn() -> str:
        store.reopen(battle_id, req.prompt)
        return battle_id

    try:
        return await _stream(
            state, store, (battle.model_a, battle.model_b), params, open_turn, req.prompt
        )
    except ConflictError as exc:
        return _conflict(exc, request)


def _public(b: Battle) -> dict[str, Any]:
    """What a client may see: names only once the vote is in."""
    out: dict[str, Any] = {
        "battle_id": b.id,
        "conversation_a": b.conversation_a,
        "conversation_b": b.conversation_b,
        "votable": b.answers_done and b.winner is None,
        "winner": b.winner,
    }
    if b.winner is not None:
        out.update(model_a=b.model_a, model_b=b.model_b, rated=b.rated, leak=b.leak)
    return out


@router.get("/battles/{battle_id}")
async def get_battle(battle_id: str, state: ServerState = Depends(get_state)) -> dict[str, Any]:
    return _public(await asyncio.to_thread(_store(state).get, battle_id))


@router.post("/battles/{battle_id}/vote", response_model=None)
async def vote(
    battle_id: str, req: VoteRequest, request: Request, state: ServerState = Depends(get_state)
) -> dict[str, Any] | JSONResponse:
    winner = VOTES.get(req.winner)
    if winner is None:
        raise UserInputError(f"winner must be one of {', '.join(VOTES)}, got {req.winner!r}")
    voter = req.voter or getattr(request.state, "key_name", None) or ""
    try:
        battle = await asyncio.to_thread(_store(state).vote, battle_id, winner, voter)
    except ConflictError as exc:
        return _conflict(exc, request)
    except NotFoundError as exc:
        # a vote names a battle the client believes it saw: the contract is 409
        # (the vote conflicts with the arena's state), the battle's own routes keep 404
        return _conflict(exc, request)
    return _public(battle)


@router.get("/leaderboard")
async def arena_leaderboard(
    style_control: bool = False, both_bad: str = "tie", state: ServerState = Depends(get_state)
) -> list[dict[str, Any]]:
    try:
        cfg = RatingConfig(style_control=style_control, both_bad=both_bad)
    except ValueError as exc:
        raise UserInputError(str(exc)) from exc

    def compute() -> list[dict[str, Any]]:
        board = leaderboard(_store(state).rated(judged=False), cfg)
        return [r.as_dict() for r in board.ratings]

    return await asyncio.to_thread(compute)
