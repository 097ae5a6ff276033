"""The streaming tool-call scanner behind `tool_calls.ToolParser`: fed text deltas of a
completion, it emits content deltas and OpenAI-shaped tool-call deltas (name first, then
argument fragments as the model writes them), holding back text that might still become a
call. Every decision depends only on the text seen so far, never on where a chunk ends,
so any chunking (and the whole text at once, which is what `parse` does) gives the same
content and calls. Content is the text outside calls, less the whitespace right before a
call and at the end. Knows nothing of HTTP, tokenizers or grammars.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# "default" is hearth's own, for models whose template renders no tools: the default
# tool-use prompt (tool_calls.default_tool_prompt) teaches it, as LM Studio's does
FORMATS: tuple[str, ...] = ("hermes", "llama3", "mistral", "default")
_START = {
    "hermes": "<tool_call>",
    "llama3": "<|python_tag|>",
    "mistral": "[TOOL_CALLS]",
    "default": "[TOOL_REQUEST]",
}
_END = {"hermes": "</tool_call>", "default": "[END_TOOL_REQUEST]"}  # closing tags
_ARGS_KEYS = ("arguments", "parameters")


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True)
class ToolCall:
    """One parsed call; `arguments_json` is the arguments object as the model wrote it
    (OpenAI's `function.arguments` string)."""

    id: str
    name: str
    arguments_json: str

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments_json},
        }

    @staticmethod
    def collect(deltas: Sequence[ToolCallDelta]) -> list[ToolCall]:
        """The calls that a sequence of deltas adds up to."""
        parts: dict[int, list[str]] = {}
        for d in deltas:
            entry = parts.setdefault(d.index, ["", "", ""])
            entry[0] = d.id or entry[0]
            entry[1] = d.name or entry[1]
            entry[2] += d.arguments
        return [ToolCall(*parts[i]) for i in sorted(parts)]


@dataclass(frozen=True)
class ToolCallDelta:
    """A streamed piece of call `index`: the first carries `id` and `name`, later ones
    argument fragments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""

    def to_openai(self) -> dict[str, Any]:
        """The `choices[].delta.tool_calls[]` entry of an OpenAI chunk."""
        out: dict[str, Any] = {"index": self.index}
        function: dict[str, Any] = {"arguments": self.arguments}
        if self.id is not None:
            out["id"] = self.id
            out["type"] = "function"
        if self.name is not None:
            function["name"] = self.name
        out["function"] = function
        return out


# -- the streaming scanner ------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SPECIAL = re.compile(r'["{}\[\]]')
_SCALAR = re.compile(r"[^\s,}\]]+")


class _Incomplete(Exception):
    """The buffer ends before the construct does: wait for more text."""


class _Malformed(Exception):
    """Not the JSON a tool call needs; `.at` is where that became clear (the same index
    however the text was chunked)."""

    def __init__(self, at: int) -> None:
        super().__init__(at)
        self.at = at


def _skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t\r\n":
        i += 1
    return i


def _value_end(s: str, i: int) -> int:
    """Index just past the JSON value starting at s[i]. Containers are matched by
    brackets only (their insides are the model's business)."""
    if s[i] == '"':
        m = _STRING.match(s, i)
        if m is None:
            raise _Incomplete
        return m.end()
    if s[i] in "{[":
        depth, j = 0, i
        while (m := _SPECIAL.search(s, j)) is not None:
            if m.group() == '"':
                string = _STRING.match(s, m.start())
                if string is None:
                    raise _Incomplete
                j = string.end()
                continue
            depth += 1 if m.group() in "{[" else -1
            j = m.end()
            if depth == 0:
                return j
        raise _Incomplete
    m = _SCALAR.match(s, i)
    if m is None or m.end() == len(s):  # a number may still be growing
        raise _Incomplete
    return m.end()


def _scan_object(s: str, i: int, members: dict[str, tuple[int, int | None]]) -> int:
    """Scan the object at s[i] == '{', filling `members` (key -> value start, end or None
    while incomplete); returns the index past '}'. Raises _Incomplete / _Malformed."""
    i = _skip_ws(s, i + 1)
    if i < len(s) and s[i] == "}":
        return i + 1
    while True:
        if i >= len(s):
            raise _Incomplete
        if s[i] != '"':
            raise _Malformed(i)
        key_end = _value_end(s, i)
        key = json.loads(s[i:key_end])
        i = _skip_ws(s, key_end)
        if i >= len(s):
            raise _Incomplete
        if s[i] != ":":
            raise _Malformed(i)
        i = _skip_ws(s, i + 1)
        if i >= len(s):
            raise _Incomplete
        members[key] = (i, None)
        end = _value_end(s, i)
        members[key] = (i, end)
        i = _skip_ws(s, end)
        if i >= len(s):
            raise _Incomplete
        if s[i] == "}":
            return i + 1
        if s[i] != ",":
            raise _Malformed(i)
        i = _skip_ws(s, i + 1)


@dataclass
class _Call:
    index: int
    raw_start: int  # where the call's text began (its marker), to give it back as content
    body: int  # where its JSON object begins
    bare: bool  # Llama 3 JSON without <|python_tag|>: decided only once complete
    id: str = ""
    named: bool = False
    args_sent: int = 0  # characters of the raw arguments value already emitted


class ToolCallStream:
    """Feed text deltas, get (content delta, tool-call deltas); `finish()` flushes."""

    def __init__(self, format: str, id_factory: Callable[[], str] = new_call_id) -> None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        self.format = format
        self._id_factory = id_factory
        self._buf = ""
        self._pos = 0
        self._mode = "text"  # text | open (after [TOOL_CALLS]) | call | after
        self._call: _Call | None = None
        self._num_calls = 0
        self._pending_ws = ""  # held: dropped if a call or the end follows
        self._content_sent = False
        self._out_text: list[str] = []
        self._out_calls: list[ToolCallDelta] = []

    def feed(self, delta: str) -> tuple[str, list[ToolCallDelta]]:
        self._buf += delta
        return self._run(final=False)

    def finish(self) -> tuple[str, list[ToolCallDelta]]:
        return self._run(final=True)

    def _run(self, final: bool) -> tuple[str, list[ToolCallDelta]]:
        step = {"text": self._text, "open": self._open, "call": self._scan, "after": self._after}
        while step[self._mode](final):
            pass
        text, calls = "".join(self._out_text), self._out_calls
        self._out_text, self._out_calls = [], []
        return text, calls

    # -- content ------------------------------------------------------------------------

    def _content(self, text: str) -> None:
        text = self._pending_ws + text
        body = text.rstrip(" \t\r\n")
        self._pending_ws = text[len(body) :]
        if body:
            self._out_text.append(body)
            self._content_sent = True

    def _text(self, final: bool) -> bool:
        buf, pos = self._buf, self._pos
        marker = _START[self.format]
        if self.format == "llama3" and not self._content_sent and not self._num_calls:
            j = _skip_ws(buf, pos)
            if j == len(buf) and not final:
                return False
            if j < len(buf) and buf[j] == "{":
                self._start_call(pos, j, bare=True)
                return True
        found = buf.find(marker, pos)
        if found >= 0:
            self._content(buf[pos:found])
            self._pending_ws = ""
            body = found + len(marker)
            if self.format == "mistral":
                self._call, self._pos, self._mode = _Call(-1, found, body, False), body, "open"
            else:
                self._start_call(found, body, bare=False)
            return True
        hold = 0 if final else _marker_prefix_len(buf, pos, marker)
        self._content(buf[pos : len(buf) - hold])
        self._pos = len(buf) - hold
        return False

    def _start_call(self, raw_start: int, body: int, bare: bool) -> None:
        self._pending_ws = ""
        self._call = _Call(self._num_calls, raw_start, body, bare)
        self._pos, self._mode = body, "call"

    def _give_back(self, upto: int) -> bool:
        """The text since the call's marker was not a call after all: it is content."""
        assert self._call is not None
        upto = max(upto, self._call.body, self._call.raw_start + 1)
        self._content(self._buf[self._call.raw_start : upto])
        self._call, self._pos, self._mode = None, upto, "text"
        return True

    # -- calls ----------------------------------------------------------------------------

    def _open(self, final: bool) -> bool:
        """After [TOOL_CALLS]: a JSON array of calls (or one bare object)."""
        assert self._call is not None
        j = _skip_ws(self._buf, self._pos)
        if j == len(self._buf):
            return self._give_back(j) if final else False
        if self._buf[j] == "[":
            j += 1
        elif self._buf[j] != "{":
            return self._give_back(j)
        self._start_call(self._call.raw_start, j, bare=False)
        return True

    def _scan(self, final: bool) -> bool:
        call, buf = self._call, self._buf
        assert call is not None
        j = _skip_ws(buf, call.body)
        if j == len(buf):
            return self._give_back(j) if final and not call.named else False
        if buf[j] != "{":
            return self._give_back(j) if not call.named else self._end_call(j)
        members: dict[str, tuple[int, int | None]] = {}
        try:
            end: int | None = _scan_object(buf, j, members)
        except _Incomplete:
            end = None
        except _Malformed as exc:
            return self._give_back(j + 1) if not call.named else self._end_call(exc.at)
        if not call.bare or end is not None:
            if not call.named and not self._send_name(members) and end is not None:
                return self._give_back(end)  # a complete object without a string "name"
            if call.named:
                self._send_args(members, complete=end is not None)
        if end is not None:
            return self._end_call(end)
        if final:
            return self._end_call(len(buf)) if call.named else self._give_back(len(buf))
        return False

    def _send_name(self, members: dict[str, tuple[int, int | None]]) -> bool:
        call = self._call
        assert call is not None
        start, end = members.get("name", (0, None))
        if end is None:
            return False
        name = json.loads(self._buf[start:end])
        if not isinstance(name, str) or not name:
            return False
        call.id, call.named = self._id_factory(), True
        self._out_calls.append(ToolCallDelta(call.index, id=call.id, name=name))
        return True

    def _send_args(self, members: dict[str, tuple[int, int | None]], complete: bool) -> None:
        call = self._call
        assert call is not None
        key = next((k for k in _ARGS_KEYS if k in members), None)
        if key is None:
            if complete:
                self._emit_args("{}")
            return
        start, end = members[key]
        if self._buf[start] == '"':
            # arguments given as a JSON-encoded string: send its text once it is whole
            if end is not None and call.args_sent == 0:
                self._emit_args(json.loads(self._buf[start:end]) or "{}")
            return
        upto = end if end is not None else len(self._buf)
        self._emit_args(self._buf[start + call.args_sent : upto])

    def _emit_args(self, text: str) -> None:
        assert self._call is not None
        if text:
            self._out_calls.append(ToolCallDelta(self._call.index, arguments=text))
            self._call.args_sent += len(text)

    def _end_call(self, end: int) -> bool:
        self._num_calls += 1
        self._call, self._pos, self._mode = None, end, "after"
        return True

    def _after(self, final: bool) -> bool:
        """Between calls: the format's closing tag / separator, or back to text."""
        buf = self._buf
        j = _skip_ws(buf, self._pos)
        rest = buf[j:]
        end_tag = _END.get(self.format)
        if end_tag is not None:
            if rest.startswith(end_tag):
                self._pos, self._mode = j + len(end_tag), "text"
                return True
            if not final and end_tag.startswith(rest):
                return False
        elif rest[:1] in (",", ";") or (self.format == "llama3" and rest[:1] == "{"):
            k = j + 1 if rest[:1] in (",", ";") else j
            k = _skip_ws(buf, k)
            if k == len(buf) and not final:
                return False
            if k < len(buf) and buf[k] == "{":
                self._start_call(k, k, bare=self.format == "llama3")
                return True
        elif self.format == "mistral" and rest[:1] == "]":
            self._pos, self._mode = j + 1, "text"
            return True
        elif not rest and not final:
            return False
        self._mode = "text"
        return True


def _marker_prefix_len(buf: str, pos: int, marker: str) -> int:
    """Length of the longest tail of buf[pos:] that could be the start of `marker`."""
    for k in range(min(len(marker) - 1, len(buf) - pos), 0, -1):
        if marker.startswith(buf[len(buf) - k :]):
            return k
    return 0
