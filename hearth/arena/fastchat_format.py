"""FastChat's battle format in and out: `parse_battles` reads a JSON list or JSONL of
`{"model_a", "model_b", "winner", "anony", "conversation_a", "conversation_b", "tstamp",
"judge", "question_id", "conv_metadata"}` (only the first three are required; `anony`
defaults to true), naming the line of every bad row; `to_fastchat` / `to_dpo` write stored
battles back out (DPO pairs: prompt, chosen, rejected, for `hearth tune --method dpo`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hearth.arena.battles import Battle, Message, NewBattle
from hearth.arena.ratings import WINNERS


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def _records(text: str) -> list[tuple[int, Any]]:
    """(line number, parsed value) per record. A JSON list gives each element the line it
    starts on; JSONL one per non-empty line. A line that is not JSON gives an exception."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            return [(exc.lineno, ValueError(f"not valid JSON: {exc.msg}"))]
        lines = _element_lines(text, len(items))
        return list(zip(lines, items, strict=True))
    out: list[tuple[int, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            out.append((number, ValueError(f"not valid JSON: {exc.msg}")))
    return out


def _element_lines(text: str, count: int) -> list[int]:
    """The line each top-level element of a JSON list starts on."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    lines = []
    for _ in range(count):
        while text[pos] in " \t\r\n,":
            pos += 1
        lines.append(text.count("\n", 0, pos) + 1)
        _, pos = decoder.raw_decode(text, pos)
    return lines


def _conversation(value: Any, field: str) -> list[Message]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") for m in value
    ):
        raise ValueError(f"{field} must be a list of {{role, content}} messages")
    return [{"role": str(m["role"]), "content": m["content"]} for m in value]


def _battle_from(row: Any, known: Callable[[str], bool] | None) -> NewBattle:
    if not isinstance(row, dict):
        raise ValueError("a battle must be a JSON object")
    for key in ("model_a", "model_b", "winner"):
        if not isinstance(row.get(key), str) or not row[key]:
            raise ValueError(f"'{key}' is missing or not a string")
    if row["winner"] not in WINNERS:
        raise ValueError(f"winner {row['winner']!r} is not one of {', '.join(WINNERS)}")
    if row["model_a"] == row["model_b"]:
        raise ValueError(f"model_a and model_b are both {row['model_a']!r}")
    if known is not None:
        for key in ("model_a", "model_b"):
            if not known(row[key]):
                raise ValueError(
                    f"model {row[key]!r} is not in the store (`hearth list`); pass "
                    "--any-model to rate battles of models you do not have"
                )
    anony = row.get("anony", True)
    if not isinstance(anony, bool):
        raise ValueError("'anony' must be true or false")
    stamp = row.get("tstamp")
    if stamp is not None and not isinstance(stamp, int | float):
        raise ValueError("'tstamp' must be a Unix time in seconds")
    meta = row.get("conv_metadata")
    if meta is not None and not isinstance(meta, dict):
        raise ValueError("'conv_metadata' must be an object")
    qid = row.get("question_id")
    return NewBattle(
        model_a=row["model_a"],
        model_b=row["model_b"],
        winner=row["winner"],
        conversation_a=_conversation(row.get("conversation_a"), "conversation_a"),
        conversation_b=_conversation(row.get("conversation_b"), "conversation_b"),
        source="import",
        voter=str(row.get("judge") or ""),
        anony=anony,
        question_id=None if qid is None else str(qid),
        conv_metadata=meta,
        created_at=None if stamp is None else datetime.fromtimestamp(stamp, UTC),
    )


def parse_battles(
    text: str, known: Callable[[str], bool] | None = None
) -> tuple[list[NewBattle], list[BadRow]]:
    """The battles that parse and the rows that do not (with their line numbers).
    `known`: the store's test for a model name; None accepts any name."""
    good: list[NewBattle] = []
    bad: list[BadRow] = []
    for line, value in _records(text):
        if isinstance(value, Exception):
            bad.append(BadRow(line, str(value)))
            continue
        try:
            good.append(_battle_from(value, known))
        except ValueError as exc:
            bad.append(BadRow(line, str(exc)))
    return good, bad


def to_fastchat(battles: Iterable[Battle]) -> list[dict[str, Any]]:
    """Voted battles in FastChat's clean-battle form."""
    out = []
    for b in battles:
        if b.winner is None:
            continue
        out.append(
            {
                "question_id": b.question_id or b.id,
                "model_a": b.model_a,
                "model_b": b.model_b,
                "winner": b.winner,
                "judge": b.judge or b.voter or "arena_user",
                "conversation_a": b.conversation_a,
                "conversation_b": b.conversation_b,
                "turn": b.num_turns,
                "anony": b.anony and b.leak is None,
                "tstamp": (b.voted_at or b.created_at).timestamp(),
                "conv_metadata": b.conv_metadata,
            }
        )
    return out


def _last_answer(conversation: list[Message]) -> str | None:
    for m in reversed(conversation):
        if m["role"] == "assistant":
            return m["content"]
    return None


def to_dpo(battles: Iterable[Battle]) -> list[dict[str, Any]]:
    """Preference pairs from decided one-turn battles: the prompt, the winner's answer as
    `chosen`, the loser's as `rejected`. Ties and both-bad say nothing of which is better;
    multi-turn battles are left out (each side's later turns follow its own earlier
    answers, so the two answers do not share one prompt)."""
    out = []
    for b in battles:
        if b.winner not in ("model_a", "model_b") or b.num_turns != 1:
            continue
        win, lose = (
            (b.conversation_a, b.conversation_b)
            if b.winner == "model_a"
            else (b.conversation_b, b.conversation_a)
        )
        chosen, rejected = _last_answer(win), _last_answer(lose)
        if chosen is None or rejected is None:
            continue
        out.append({"prompt": b.prompt, "chosen": chosen, "rejected": rejected})
    return out
