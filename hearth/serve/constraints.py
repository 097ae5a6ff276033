"""What a request asks its output to be, decided before anything is generated: the output
constraint (OpenAI `response_format`, Ollama `format`, hearth's `regex` / `grammar`
extension fields) and the tool plan (the tools the chat template renders, the tool-call
format the model writes, and the grammar that `tool_choice` "required" or a named function
imposes). Whatever the grammar backend cannot enforce is refused as InvalidParameterError
naming the request field (HTTP 400), never ignored. Also turns the tool calls of earlier
assistant turns into the shape chat templates read. Knows nothing of routes or tensors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hearth.errors import GrammarError, InvalidParameterError

if TYPE_CHECKING:
    from hearth.engine.structured import StructuredSpec

__all__ = [
    "ToolPlan",
    "combine",
    "output_constraint",
    "plan_tools",
    "template_tool_calls",
    "tool_mode",
]


def output_constraint(
    *,
    response_format: Mapping[str, Any] | None = None,
    format: str | Mapping[str, Any] | None = None,
    regex: str | None = None,
    grammar: str | None = None,
) -> StructuredSpec | None:
    """The one constraint the request asks for (None: free text). A schema, regex or
    grammar the backend cannot enforce is InvalidParameterError naming the field it came
    in, with the backend's reason (e.g. the unsupported keyword)."""
    from hearth.engine.structured import StructuredSpec

    given = {"response_format": response_format, "format": format, "regex": regex}
    given["grammar"] = grammar
    try:
        return StructuredSpec.from_request(
            response_format=response_format, format=format, regex=regex, grammar=grammar
        )
    except GrammarError as exc:
        field = next((name for name, value in given.items() if value is not None), "format")
        raise InvalidParameterError(field, f"{field}: {exc}") from exc


@dataclass(frozen=True)
class ToolPlan:
    """tools: the normalised tools to render through the chat template (None: render
    none). format: the tool-call format to parse the output with (None: do not parse).
    structured: the grammar forcing a call ("required" / a named function), else None.
    mode: "template" (the chat template renders the tools), "default-prompt" (it cannot:
    hearth's default tool-use prompt describes them in the system message), None (no
    tools); servers report it in the `x-hearth-tool-mode` header. default_prompt_tools:
    the tools the default prompt describes."""

    tools: list[dict[str, Any]] | None = None
    format: str | None = None
    structured: StructuredSpec | None = None
    mode: str | None = None
    default_prompt_tools: list[dict[str, Any]] | None = None

    def messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The conversation to render: with the default tool prompt in default-prompt mode."""
        if self.default_prompt_tools is None:
            return messages
        from hearth.engine.tool_calls import default_tool_messages

        return default_tool_messages(messages, self.default_prompt_tools)

    @property
    def headers(self) -> dict[str, str]:
        return {"x-hearth-tool-mode": self.mode} if self.mode else {}


def tool_mode(chat_template: str | None) -> str:
    """How tools reach a model with this chat template: "template" when it renders them in
    a format hearth parses, else "default-prompt"."""
    from hearth.engine.tool_calls import detect_tool_format

    fmt = detect_tool_format(chat_template)
    return "template" if fmt is not None and "tools" in (chat_template or "") else "default-prompt"


def plan_tools(
    chat_template: str | None, tools: Sequence[Any] | None, tool_choice: Any
) -> ToolPlan:
    """How a request's `tools` and `tool_choice` are honoured. "none" renders no tools and
    parses nothing (so no tool is called); "auto" (the default with tools) renders them and
    parses calls out of the text; "required" or `{"type": "function", "function": {"name":
    ...}}` also generates under a grammar that makes the model write one call whose
    arguments validate against the tool's parameter schema. Tools are never dropped: a
    template that cannot render them gets hearth's default tool-use prompt instead
    (tool_calls.default_tool_prompt, as LM Studio does). 400s: a tool_choice naming an
    absent tool, a parameter schema the backend cannot enforce."""
    from hearth.engine.tool_calls import check_tools_renderable, normalize_tools, tool_call_spec

    if tool_choice == "none":
        return ToolPlan()
    if not tools:
        if tool_choice is None or tool_choice == "auto":
            return ToolPlan()
        raise InvalidParameterError(
            "tool_choice", "tool_choice asks for a tool call, but no tools were given; add `tools`"
        )
    normalized = normalize_tools(tools)
    mode = tool_mode(chat_template)
    fmt = check_tools_renderable(chat_template, normalized) if mode == "template" else "default"
    assert fmt is not None  # tools were given, so a format or an error
    try:
        spec = tool_call_spec(normalized, "auto" if tool_choice is None else tool_choice, fmt)
    except GrammarError as exc:
        raise InvalidParameterError("tools", f"tools: a parameter schema {exc}") from exc
    if mode == "template":
        return ToolPlan(normalized, fmt, spec, mode)
    # the template would drop the tools: describe them in the system message instead
    return ToolPlan(None, fmt, spec, mode, default_prompt_tools=normalized)


def combine(plan: ToolPlan, structured: StructuredSpec | None) -> StructuredSpec | None:
    """The grammar to generate under; a forced tool call and an output format cannot
    both hold (the call is not the asked-for JSON)."""
    if plan.structured is not None and structured is not None:
        raise InvalidParameterError(
            "tool_choice",
            "tool_choice 'required' or a named function makes the output a tool call, which "
            "cannot also follow response_format / format / regex / grammar; drop one of them",
        )
    return plan.structured or structured


def template_tool_calls(calls: Sequence[Any], where: str) -> list[dict[str, Any]]:
    """The tool calls of an earlier assistant message as chat templates read them:
    `{"type": "function", "function": {"name", "arguments": {...}}}` with the arguments
    as an object (OpenAI sends them as JSON text; templates write `arguments | tojson`)."""
    out: list[dict[str, Any]] = []
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            raise InvalidParameterError(
                f"{where}[{j}]",
                f'{where}[{j}] must be {{"function": {{"name": ..., "arguments": ...}}}}',
            )
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError as exc:
                raise InvalidParameterError(
                    f"{where}[{j}].function.arguments",
                    f"{where}[{j}].function.arguments is not valid JSON ({exc}); send the "
                    "arguments object as JSON text, as the model returned it",
                ) from exc
        entry = {**call, "type": "function", "function": {**fn, "arguments": args}}
        out.append(entry)
    return out
