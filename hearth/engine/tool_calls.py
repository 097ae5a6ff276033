"""Tool calls in model output: parsers for the formats models are trained on (Hermes/Qwen
`<tool_call>{json}</tool_call>`, Llama 3 JSON `{"name": ..., "parameters": ...}` /
`<|python_tag|>`, Mistral `[TOOL_CALLS][...]`), streaming and whole; which format a chat
template uses; and the grammar that forces a call for `tool_choice="required"` or a named
function. Knows nothing of HTTP (it emits OpenAI-shaped dicts, the server sends them) and
nothing of tensors.

Streamed == non-streamed by construction: `ToolParser.parse(text)` *is* the streaming
parser (tool_call_stream.py) fed the whole text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hearth.engine.grammar_bounds import bound_schema
from hearth.engine.grammar_spec import JSON_OPTIONS, StructuredSpec
from hearth.engine.tool_call_stream import (
    FORMATS,
    ToolCall,
    ToolCallDelta,
    ToolCallStream,
    new_call_id,
)
from hearth.errors import InvalidParameterError

__all__ = [
    "FORMATS",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallStream",
    "ToolParser",
    "check_tools_renderable",
    "default_tool_messages",
    "default_tool_prompt",
    "detect_tool_format",
    "normalize_tools",
    "template_messages",
    "tool_call_spec",
]


class ToolParser:
    """Parser for one tool-call format ("hermes", "llama3" or "mistral")."""

    def __init__(self, format: str, id_factory: Callable[[], str] = new_call_id) -> None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        self.format = format
        self.id_factory = id_factory

    def stream(self) -> ToolCallStream:
        """A fresh streaming parser: `feed(delta) -> (content, deltas)`, then `finish()`."""
        return ToolCallStream(self.format, self.id_factory)

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        """(content, calls) of a whole completion; the same as streaming it."""
        stream = self.stream()
        content, deltas = stream.feed(text)
        tail, more = stream.finish()
        return content + tail, ToolCall.collect(deltas + more)


def detect_tool_format(chat_template: str | None) -> str | None:
    """The tool-call format a chat template teaches its model, or None if the template
    does not render tools in a format we parse."""
    if not chat_template:
        return None
    if "<tool_call>" in chat_template:
        return "hermes"
    if "[TOOL_CALLS]" in chat_template:
        return "mistral"
    if "<|python_tag|>" in chat_template or (
        "tools" in chat_template and '"parameters"' in chat_template
    ):
        return "llama3"
    return None


def check_tools_renderable(chat_template: str | None, tools: Sequence[Any] | None) -> str | None:
    """The tool format to parse with, or InvalidParameterError(param="tools") when tools
    are given to a template that cannot render them (silently dropping them would make
    the model answer as if it had no tools)."""
    if not tools:
        return None
    fmt = detect_tool_format(chat_template)
    if fmt is None or "tools" not in (chat_template or ""):
        raise InvalidParameterError(
            "tools",
            "this model's chat template does not render tools, so the model cannot call them; "
            "use a model whose template supports tools, or describe the tools in the prompt",
        )
    return fmt


def normalize_tools(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI `tools` checked and completed: `[{"type": "function", "function": {"name",
    "description"?, "parameters"}}]` (a missing `parameters` means no arguments)."""
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(tool, Mapping) or tool.get("type", "function") != "function" or (
            not isinstance(fn, Mapping)
        ):
            raise InvalidParameterError(
                "tools", f'tools[{i}] must be {{"type": "function", "function": {{"name": ...}}}}'
            )
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidParameterError("tools", f"tools[{i}].function.name must be a non-empty string")
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, Mapping):
            raise InvalidParameterError("tools", f"tools[{i}].function.parameters must be a JSON schema object")
        function = {**fn, "name": name, "parameters": dict(params)}
        out.append({"type": "function", "function": function})
    names = [t["function"]["name"] for t in out]
    if len(set(names)) != len(names):
        raise InvalidParameterError("tools", "tool names must be unique")
    return out


def template_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI chat history as HF chat templates want it: assistant `tool_calls` carry
    `function.arguments` as a JSON *string* in the API but as a dict in templates (Qwen's
    writes `arguments | tojson`; a string would come out double-encoded). `role: tool`
    messages pass through, so tool results reach the next turn."""
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        message = dict(message)
        calls = message.get("tool_calls")
        if calls:
            converted = []
            for call in calls:
                fn = dict(call.get("function") or {})
                args = fn.get("arguments", "{}")
                if isinstance(args, str):
                    try:
                        args = json.loads(args or "{}")
                    except json.JSONDecodeError as exc:
                        raise InvalidParameterError(
                            "messages",
                            f"messages[{i}].tool_calls: arguments of {fn.get('name')!r} "
                            f"are not JSON ({exc.msg}); send them as the model returned them",
                        ) from exc
                fn["arguments"] = args
                converted.append({**call, "type": "function", "function": fn})
            message["tool_calls"] = converted
            if message.get("content") is None:
                message["content"] = ""
        out.append(message)
    return out


def tool_call_spec(
    tools: Sequence[Mapping[str, Any]], tool_choice: Any, format: str
) -> StructuredSpec | None:
    """The grammar for `tool_choice`: None for "auto"/"none"/absent (the model decides;
    the parser extracts calls); for "required" or a named function, one call in the
    model's own wrapper whose name is a given tool and whose arguments validate against
    that tool's parameter schema. A named function that is not in `tools` is an
    InvalidParameterError(param="tool_choice"); a parameter schema the backend cannot
    enforce is a GrammarError."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if tool_choice is None or tool_choice in ("auto", "none"):
        return None
    normalized = normalize_tools(tools) if tools else []
    if tool_choice == "required":
        chosen = normalized
        if not chosen:
            raise InvalidParameterError("tool_choice", 'tool_choice "required" needs tools')
    else:
        name = _named_choice(tool_choice)
        chosen = [t for t in normalized if t["function"]["name"] == name]
        if not chosen:
            known = ", ".join(t["function"]["name"] for t in normalized) or "none given"
            raise InvalidParameterError(
                "tool_choice", f"tool_choice names function {name!r}, which is not in tools ({known})"
            )
    args_key = "parameters" if format == "llama3" else "arguments"
    variants = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t["function"]["name"]},
                args_key: t["function"]["parameters"],
            },
            "required": ["name", args_key],
            "additionalProperties": False,
        }
        for t in chosen
    ]
    call: dict[str, Any] = variants[0] if len(variants) == 1 else {"anyOf": variants}
    if format == "llama3":
        return StructuredSpec.json_schema(call)
    # the wrapper is literal text; the call inside is JSON under the same options as
    # response_format (compact separators), via llguidance's inline %json
    inline = json.dumps({**bound_schema(call), "x-guidance": JSON_OPTIONS})
    if format == "hermes":
        lark = f'start: "<tool_call>\\n" call "\\n</tool_call>"\ncall: %json {inline}\n'
    elif format == "default":
        lark = f'start: "[TOOL_REQUEST]" call "[END_TOOL_REQUEST]"\ncall: %json {inline}\n'
    else:
        lark = f'start: "[TOOL_CALLS][" call "]"\ncall: %json {inline}\n'
    return StructuredSpec.grammar(lark)


def _named_choice(tool_choice: Any) -> str:
    """The function name of `{"type": "function", "function": {"name": ...}}` (OpenAI) or
    a bare name string."""
    if isinstance(tool_choice, str) and tool_choice:
        return tool_choice
    if isinstance(tool_choice, Mapping):
        fn = tool_choice.get("function")
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            return str(fn["name"])
    raise InvalidParameterError(
        "tool_choice",
        'tool_choice must be "auto", "none", "required" or '
        '{"type": "function", "function": {"name": ...}}',
    )


# -- the default tool-use prompt ------------------------------------------------------------
# For a chat template that renders no tools (both catalog models'), hearth does what LM
# Studio's "default tool use" does: it describes the tools in the system message and asks
# for calls in one fixed format, `[TOOL_REQUEST]{"name": ..., "arguments": {...}}
# [END_TOOL_REQUEST]`, which the "default" parser reads; tool_choice "required" / a named
# function forces such a call with the grammar (tool_call_spec), "auto" parses what the
# model writes. The wording is hearth's own; it is documented in docs/tools.md.
DEFAULT_TOOL_PROMPT = """\
You can call tools to answer. The tools are listed between <tools></tools>, one JSON \
object each:
<tools>
{tools}
</tools>

To call a tool, answer with only this, one block per call, the arguments as a JSON object:
[TOOL_REQUEST]{{"name": "tool_name", "arguments": {{"argument": "value"}}}}[END_TOOL_REQUEST]

Call only the tools listed above and give every required argument. A tool's result comes \
back between [TOOL_RESULT] and [END_TOOL_RESULT]. If no tool is needed, answer normally."""


def default_tool_prompt(tools: Sequence[Mapping[str, Any]]) -> str:
    """The system text that teaches a model without tool support the tools and the format."""
    listed = "\n".join(json.dumps(t["function"]) for t in normalize_tools(tools))
    return DEFAULT_TOOL_PROMPT.format(tools=listed)


def default_tool_messages(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """`messages` for a template without tool support: the default tool prompt joins the
    system message (or becomes one), earlier calls are written into the assistant's text in
    the default format, and `role: "tool"` results become user turns (templates without
    tools often refuse an unknown role)."""
    prompt = default_tool_prompt(tools)
    out: list[dict[str, Any]] = []
    for message in messages:
        message = dict(message)
        calls = message.pop("tool_calls", None)
        if calls:
            written = "".join(
                "[TOOL_REQUEST]"
                + json.dumps({"name": c["function"]["name"],
                              "arguments": c["function"].get("arguments", {})})
                + "[END_TOOL_REQUEST]"
                for c in template_messages([{"tool_calls": calls}])[0]["tool_calls"]
            )
            message["content"] = (message.get("content") or "") + written
        if message.get("role") == "tool":
            message = {"role": "user",
                       "content": f"[TOOL_RESULT]{message.get('content') or ''}[END_TOOL_RESULT]"}
        out.append(message)
    if out and out[0].get("role") == "system":
        out[0]["content"] = f"{out[0].get('content') or ''}\n\n{prompt}".lstrip()
    else:
        out.insert(0, {"role": "system", "content": prompt})
    return out
