"""`hearth arena` in the terminal: draw a pair, stream both answers side by side as "A" and
"B", take the vote (or another turn with the same pair), reveal the names. The battles run
in hearth.arena; this file only talks to the person at the keyboard."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from hearth.cli.output import Output
from hearth.errors import UserInputError

CHOICES = {"a": "model_a", "b": "model_b", "t": "tie", "x": "tie (bothbad)"}


def load_prompts(path: Path) -> list[list[str]]:
    """Each line's turns: MT-Bench's `turns`, or one `prompt` / `text`."""
    from hearth.arena.judge import read_jsonl

    if not path.is_file():
        raise UserInputError(f"no such prompt file: {path}")
    out = []
    for number, row in read_jsonl(path):
        turns = row.get("turns") or [row.get("prompt") or row.get("text")]
        if (
            not isinstance(turns, list)
            or not turns
            or not all(isinstance(t, str) and t for t in turns)
        ):
            raise UserInputError(f"{path} line {number}: needs `turns`, `prompt` or `text`")
        out.append(turns)
    if not out:
        raise UserInputError(f"{path} holds no prompts")
    return out


def _prompts(path: Path | None, rng: random.Random) -> Iterator[list[str] | None]:
    if path is None:
        while True:
            yield None
    items = load_prompts(path)
    while True:
        yield items[rng.randrange(len(items))]


class _Contenders:
    """Models loaded on first draw, kept for later battles."""

    def __init__(self) -> None:
        self.loaded: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        from hearth.arena.duel import Contender
        from hearth.engine.async_engine import AsyncEngine
        from hearth.engine.llm import LLM

        if name not in self.loaded:
            llm = LLM(name)
            self.loaded[name] = Contender(
                name, AsyncEngine(llm.engine), llm.tokenizer, llm.max_model_len
            )
        return self.loaded[name]

    def close(self) -> None:
        for c in self.loaded.values():
            c.engine.shutdown()


def _show_turn(
    out: Output, session: Any, battle_id: str, a: Any, b: Any, prompt: str | None
) -> None:
    from rich.columns import Columns
    from rich.live import Live
    from rich.panel import Panel

    texts = {"a": "", "b": ""}

    def view() -> Columns:
        return Columns(
            [Panel(texts["a"] or "...", title="A"), Panel(texts["b"] or "...", title="B")],
            equal=True,
            expand=True,
        )

    async def run() -> None:
        with Live(view(), console=out.console, refresh_per_second=8) as live:
            async for delta in session.answer(battle_id, a, b, prompt):
                texts[delta.side] += delta.text
                live.update(view())

    asyncio.run(run())


def run_terminal_battles(
    out: Output, models: list[str], prompt_file: Path | None, max_tokens: int, seed: int | None
) -> None:
    from hearth.arena.battles import BattleStore
    from hearth.arena.duel import ArenaSession
    from hearth.arena.pair_sampler import draw_pair
    from hearth.arena.ratings import leaderboard
    from hearth.config import load_settings
    from hearth.engine.sampling_params import SamplingParams
    from hearth.store.store import Store

    settings = load_settings()
    store = Store(settings)
    names = [store.get(m).name for m in models] if models else [r.name for r in store.list()]
    battles = BattleStore(settings.db_url)
    rng = random.Random(seed)
    session = ArenaSession(
        battles, SamplingParams(max_tokens=max_tokens, temperature=0.7, seed=seed)
    )
    contenders = _Contenders()
    prompts = _prompts(prompt_file, rng)
    try:
        while True:
            rated = battles.rated(judged=False)
            name_a, name_b = draw_pair(names, rated, leaderboard(rated), rng)
            turns = next(prompts)
            first = turns[0] if turns else typer.prompt("prompt")
            a, b = contenders.get(name_a), contenders.get(name_b)
            battle_id = session.open(a, b, first)
            _show_turn(out, session, battle_id, a, b, None)
            for later in (turns or [])[1:]:
                out.console.print(f"[bold]next turn:[/] {later}")
                session.next_turn(battle_id, later)
                _show_turn(out, session, battle_id, a, b, later)
            while True:
                choice = typer.prompt("vote: a, b, t (tie), x (both bad), c (another turn)").strip()
                if choice in CHOICES:
                    break
                if choice == "c":
                    follow = typer.prompt("prompt")
                    session.next_turn(battle_id, follow)
                    _show_turn(out, session, battle_id, a, b, follow)
            voted = battles.vote(battle_id, CHOICES[choice], voter="terminal")
            out.console.print(f"A was {voted.model_a}, B was {voted.model_b}", highlight=False)
            if voted.leak:
                out.console.print(f"not rated: an answer named a model ('{voted.leak}')")
            if not typer.confirm("another battle?", default=True):
                return
    finally:
        contenders.close()
