"""Tool calls out of generated text, in each API's shape. OpenAI: `message.tool_calls`
[{id, type: "function", function: {name, arguments: JSON text}}], and in streams the
tool-call deltas (index, id, type and function.name first, then argument fragments) that
add up to exactly those calls. Ollama: `message.tool_calls` [{function: {name, arguments:
object}}], each call sent whole once the model has finished writing it.

Both are `hearth.engine.tool_calls` parsers fed the engine's text deltas; the non-streamed
answer is the same parser fed the whole text, so a streamed and a plain request with the
same seed give the same calls. Knows nothing of routes or tensors.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hearth.engine.outputs import CompletionOutput
from hearth.engine.tool_calls import ToolCall, ToolCallDelta, ToolParser

__all__ = [
    "OllamaToolStream",
    "OpenAIToolStream",
    "finish_reason",
    "incomplete_flag",
    "incomplete_header",
    "ollama_message",
    "openai_message",
]


def finish_reason(reason: str | None, called: bool) -> str | None:
    """OpenAI's "tool_calls" when the answer ended on a call (a cut-off one keeps "length")."""
    return "tool_calls" if called and reason == "stop" else reason


def incomplete_flag(out: CompletionOutput) -> dict[str, Any]:
    """`{"hearth_incomplete": true}` for a constrained output its token budget could not
    complete (not valid JSON / not a full match), to merge into a choice; else nothing."""
    return {"hearth_incomplete": True} if out.structure_incomplete else {}


def incomplete_header(outs: Sequence[CompletionOutput]) -> dict[str, str]:
    """The response header that says the same for a whole (non-streamed) answer."""
    return {"x-hearth-incomplete": "true"} if any(o.structure_incomplete for o in outs) else {}


def openai_message(text: str, fmt: str | None) -> dict[str, Any]:
    """The assistant message of a whole completion; with a tool format, calls are parsed
    out (content then holds the text outside them, null when there is none)."""
    if fmt is None:
        return {"role": "assistant", "content": text}
    content, calls = ToolParser(fmt).parse(text)
    if not calls:
        return {"role": "assistant", "content": content}
    return {
        "role": "assistant",
        "content": content or None,
        "tool_calls": [c.to_openai() for c in calls],
    }


class OpenAIToolStream:
    """One choice's stream: `feed(delta_text, finished)` -> (content delta, tool-call delta
    entries for `choices[].delta.tool_calls`)."""

    def __init__(self, fmt: str) -> None:
        self._stream = ToolParser(fmt).stream()
        self.called = False

    def feed(self, delta: str, finished: bool) -> tuple[str, list[dict[str, Any]]]:
        content, deltas = self._stream.feed(delta)
        if finished:
            tail, more = self._stream.finish()
            content, deltas = content + tail, deltas + more
        self.called = self.called or bool(deltas)
        return content, _merged(deltas)


def _merged(deltas: list[ToolCallDelta]) -> list[dict[str, Any]]:
    """One entry per call index in a chunk (a name and its first argument fragment can
    arrive together), in order."""
    out: list[dict[str, Any]] = []
    for d in deltas:
        entry = d.to_openai()
        if out and out[-1]["index"] == d.index:
            last = out[-1]
            last["function"]["arguments"] += d.arguments
            if d.name is not None:
                last["function"]["name"] = d.name
            if d.id is not None:
                last["id"], last["type"] = d.id, "function"
        else:
            out.append(entry)
    return out


def _ollama_call(call: ToolCall) -> dict[str, Any] | None:
    """Ollama's shape, arguments as an object; None for a call whose arguments do not
    parse, which only happens when the token limit cut it off (done_reason "length")."""
    try:
        args = json.loads(call.arguments_json) if call.arguments_json.strip() else {}
    except json.JSONDecodeError:
        return None
    if not isinstance(args, dict):
        return None
    return {"function": {"name": call.name, "arguments": args}}


def ollama_message(text: str, fmt: str | None) -> dict[str, Any]:
    if fmt is None:
        return {"role": "assistant", "content": text}
    content, calls = ToolParser(fmt).parse(text)
    shaped = [c for c in (_ollama_call(call) for call in calls) if c is not None]
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if shaped:
        message["tool_calls"] = shaped
    return message


class OllamaToolStream:
    """`feed(delta_text, finished)` -> (content delta, calls completed so far). A call is
    complete once the next one starts or the output ends."""

    def __init__(self, fmt: str) -> None:
        self._stream = ToolParser(fmt).stream()
        self._pending: list[ToolCallDelta] = []

    def feed(self, delta: str, finished: bool) -> tuple[str, list[dict[str, Any]]]:
        content, deltas = self._stream.feed(delta)
        if finished:
            tail, more = self._stream.finish()
            content, deltas = content + tail, deltas + more
        self._pending += deltas
        last = self._pending[-1].index if self._pending and not finished else None
        done = [d for d in self._pending if d.index != last]
        self._pending = [d for d in self._pending if d.index == last]
        calls = [c for c in (_ollama_call(call) for call in ToolCall.collect(done)) if c]
        return content, calls
