"""What a row means: a conversation (OpenAI `messages`, ShareGPT `conversations`), an
instruction (alpaca `instruction`/`input`/`output`), a prompt/completion pair, plain
`text`, or a preference pair (`prompt`/`chosen`/`rejected`) for DPO. The format is read
from each row's keys, so one file may mix them. Knows nothing of tokens (tokenize.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hearth.errors import UserInputError
from hearth.tune.data_files import Row

__all__ = ["Example", "PreferenceExample", "parse_example", "parse_preference"]

Message = dict[str, Any]

_ROLES = ("system", "user", "assistant", "tool", "developer")
_SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "tool": "tool",
                   "function_call": "assistant", "observation": "tool"}  # fmt: skip


@dataclass(frozen=True)
class Example:
    """One supervised example. Either `messages` (a conversation rendered with the model's
    chat template; the loss is on assistant turns) or `pieces` (raw text pieces, each with
    whether the loss covers it: plain text is one trained piece; a prompt/completion pair is
    an untrained prompt and a trained completion)."""

    source: str
    messages: tuple[Message, ...] | None = None
    pieces: tuple[tuple[str, bool], ...] | None = None
    tools: tuple[dict[str, Any], ...] | None = None


@dataclass(frozen=True)
class PreferenceExample:
    """A DPO pair: the conversation so far, and the preferred and the rejected answer."""

    source: str
    prompt: tuple[Message, ...]
    chosen: Message
    rejected: Message


def parse_example(row: Row) -> Example:
    """The Example a row holds. Raises UserInputError naming the row when its keys match no
    format or a conversation has no assistant turn."""
    f = row.fields
    if f.get("messages") is not None or f.get("conversations") is not None:
        messages = _messages(f.get("messages") or f.get("conversations"), row.source)
        if not any(m["role"] == "assistant" for m in messages):
            raise UserInputError(
                f"{row.source}: the conversation has no assistant turn, so there is nothing to "
                "learn (the loss is on assistant tokens only); add one or drop the row"
            )
        tools = f.get("tools")
        return Example(row.source, messages=messages, tools=tuple(tools) if tools else None)
    if f.get("instruction") is not None and f.get("output") is not None:
        user = str(f["instruction"])
        if f.get("input"):
            user = f"{user}\n\n{f['input']}"
        return Example(
            row.source,
            messages=(
                {"role": "user", "content": user},
                {"role": "assistant", "content": str(f["output"])},
            ),
        )
    if f.get("prompt") is not None and f.get("completion") is not None:
        if isinstance(f["prompt"], list) and isinstance(f["completion"], list):  # TRL's chat form
            messages = _messages(f["prompt"] + f["completion"], row.source)
            return Example(row.source, messages=messages)
        return Example(row.source, pieces=((str(f["prompt"]), False), (str(f["completion"]), True)))
    if isinstance(f.get("text"), str):
        if not f["text"].strip():
            raise UserInputError(f"{row.source}: the text is empty")
        return Example(row.source, pieces=((f["text"], True),))
    raise UserInputError(
        f"{row.source}: no known format in keys {sorted(f)[:8]}; a row needs `messages` "
        "(chat), `instruction`+`output` (alpaca), `prompt`+`completion`, or `text`"
    )


def parse_preference(row: Row) -> PreferenceExample:
    """The preference pair a row holds (`prompt` as text or messages; `chosen`/`rejected`
    as text or a list ending with the assistant's message)."""
    f = row.fields
    if f.get("chosen") is None or f.get("rejected") is None:
        raise UserInputError(
            f"{row.source}: DPO needs preference pairs: `prompt`, `chosen` and `rejected` "
            f"(this row has {sorted(f)[:8]})"
        )
    prompt = f.get("prompt")
    if isinstance(prompt, str):
        messages: tuple[Message, ...] = ({"role": "user", "content": prompt},)
    elif isinstance(prompt, list):
        messages = _messages(prompt, row.source)
    else:
        raise UserInputError(f"{row.source}: `prompt` must be text or a list of messages")
    return PreferenceExample(
        row.source, messages, _answer(f["chosen"], row.source), _answer(f["rejected"], row.source)
    )


def _answer(value: Any, source: str) -> Message:
    if isinstance(value, str):
        return {"role": "assistant", "content": value}
    if isinstance(value, list) and value:
        last = _messages(value, source)[-1]
        if last["role"] == "assistant":
            return last
    raise UserInputError(
        f"{source}: `chosen`/`rejected` must be text or messages ending with the assistant's"
    )


def _messages(value: Any, source: str) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise UserInputError(
            f"{source}: `messages` must be a non-empty list of {{role, content}} objects"
        )
    out: list[Message] = []
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            raise UserInputError(f"{source}: message {index} is not an object")
        if "from" in message and "role" not in message:  # ShareGPT
            role = _SHAREGPT_ROLES.get(str(message["from"]))
            message = {"role": role, "content": message.get("value", "")}
        role = message.get("role")
        if role not in _ROLES:
            raise UserInputError(
                f"{source}: message {index} has role {role!r}; use one of {', '.join(_ROLES)}"
            )
        content = message.get("content")
        if content is None and not message.get("tool_calls"):
            raise UserInputError(f"{source}: message {index} ({role}) has no content")
        out.append(dict(message))
    return tuple(out)
