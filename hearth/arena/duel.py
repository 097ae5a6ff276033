"""One turn of a battle: both models answer the same conversation at once, and their text
arrives as one stream of events tagged "a" and "b" (in whatever order the engines produce
it). `ArenaSession` keeps the battle in the database around that: the turn is stored when
both answers are complete, which is what makes the battle votable.

Talks to the engine (`AsyncEngine`); knows nothing of HTTP or the terminal."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from hearth.arena.battles import Battle, BattleStore, Message
from hearth.arena.style import conv_metadata
from hearth.engine.async_engine import AsyncEngine
from hearth.engine.sampling_params import SamplingParams
from hearth.errors import ContextLengthError, UserInputError


@dataclass
class Contender:
    """A loaded model as the arena sees it: its name, its engine and its tokenizer (for the
    chat template)."""

    name: str
    engine: AsyncEngine
    tokenizer: Any
    max_model_len: int


@dataclass(frozen=True)
class Delta:
    side: str  # "a" or "b"
    text: str


@dataclass
class _Answer:
    text: str = ""
    num_tokens: int = 0
    finish_reason: str | None = None


@dataclass
class TurnResult:
    answers: dict[str, _Answer] = field(default_factory=dict)


async def _run_side(
    side: str,
    who: Contender,
    conversation: Sequence[Message],
    params: SamplingParams,
    queue: asyncio.Queue[Delta | BaseException | None],
    answer: _Answer,
) -> None:
    try:
        prompt = list(who.tokenizer.encode_chat(list(conversation), add_generation_prompt=True))
        if len(prompt) >= who.max_model_len:
            raise ContextLengthError(len(prompt), who.max_model_len)
        # an answer may not run past the context: cap it at what is left
        room = who.max_model_len - len(prompt)
        if params.max_tokens is None or params.max_tokens > room:
            params = dataclasses.replace(params, max_tokens=room)
        async for out in who.engine.generate(prompt, params):
            done = out.outputs[0]
            if done.delta_text:
                answer.text += done.delta_text
                await queue.put(Delta(side, done.delta_text))
            answer.num_tokens = len(done.token_ids)
            answer.finish_reason = done.finish_reason
    except BaseException as exc:  # handed to the consumer, which re-raises it
        await queue.put(exc)
    finally:
        await queue.put(None)


async def duel(
    a: Contender,
    b: Contender,
    conversation_a: Sequence[Message],
    conversation_b: Sequence[Message],
    params: SamplingParams,
    result: TurnResult,
) -> AsyncIterator[Delta]:
    """Stream both answers; `result` holds the full answers when the iterator ends.
    Leaving early cancels both generations (their requests are aborted)."""
    queue: asyncio.Queue[Delta | BaseException | None] = asyncio.Queue()
    result.answers = {"a": _Answer(), "b": _Answer()}
    tasks = [
        asyncio.create_task(_run_side("a", a, conversation_a, params, queue, result.answers["a"])),
        asyncio.create_task(_run_side("b", b, conversation_b, params, queue, result.answers["b"])),
    ]
    try:
        running = 2
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class ArenaSession:
    """Battles between two contenders, kept in `store`."""

    def __init__(self, store: BattleStore, params: SamplingParams) -> None:
        self.store = store
        self.params = params

    def open(self, a: Contender, b: Contender, prompt: str, source: str = "arena") -> str:
        if a.name == b.name:
            raise UserInputError("a battle needs two different models")
        if not prompt.strip():
            raise UserInputError("the prompt is empty")
        return self.store.start(a.name, b.name, prompt, source)

    def next_turn(self, battle_id: str, prompt: str) -> Battle:
        if not prompt.strip():
            raise UserInputError("the prompt is empty")
        return self.store.reopen(battle_id, prompt)

    async def answer(
        self, battle_id: str, a: Contender, b: Contender, prompt: str | None = None
    ) -> AsyncIterator[Delta]:
        """Stream the answers to the battle's latest user turn (`prompt` appended first, for
        a further turn), then store the turn. Answers cut short are not stored."""
        battle = self.store.get(battle_id)
        conv_a, conv_b = list(battle.conversation_a), list(battle.conversation_b)
        if prompt is not None:
            conv_a.append({"role": "user", "content": prompt})
            conv_b.append({"role": "user", "content": prompt})
        result = TurnResult()
        async for delta in duel(a, b, conv_a, conv_b, self.params, result):
            yield delta
        ans_a, ans_b = result.answers["a"], result.answers["b"]
        conv_a.append({"role": "assistant", "content": ans_a.text})
        conv_b.append({"role": "assistant", "content": ans_b.text})
        meta = _metadata(battle.conv_metadata, ans_a, ans_b, conv_a, conv_b)
        self.store.finish_turn(battle_id, conv_a, conv_b, meta)


def _metadata(
    old: dict[str, Any], a: _Answer, b: _Answer, conv_a: list[Message], conv_b: list[Message]
) -> dict[str, Any]:
    """Style features over all assistant turns so far (token counts add up per turn)."""
    text_a = "\n".join(m["content"] for m in conv_a if m["role"] == "assistant")
    text_b = "\n".join(m["content"] for m in conv_b if m["role"] == "assistant")
    tokens_a = int(old.get("sum_assistant_a_tokens", 0)) + a.num_tokens
    tokens_b = int(old.get("sum_assistant_b_tokens", 0)) + b.num_tokens
    return conv_metadata(text_a, text_b, tokens_a, tokens_b)
