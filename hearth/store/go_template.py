"""Translate an Ollama TEMPLATE (Go text/template, as Ollama's Modelfiles write it) into the
Jinja chat template hearth renders. The common constructs translate: `.System`, `.Prompt`,
`.Response` (the legacy one-turn form, repeated per user turn as Ollama does), `range
.Messages` with `.Role` / `.Content` (and `$.System`, `$i, $m := range`), `if` / `else if` /
`else` / `end`, `eq` / `ne` / `and` / `or` / `not`, string literals and `{{-` / `-}}` trimming.
Anything else is refused with an error naming it. A TEMPLATE already in Jinja (`{%`) is kept.
Knows nothing of the store or tokenizers."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hearth.errors import UserInputError

_ACTION = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.DOTALL)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\(|\)|[^\s()]+')
_FUNCS = {"eq", "ne", "and", "or", "not"}
_TOP_FIELDS = {
    ".System": "system",
    ".Prompt": "prompt",
    ".Response": "response",
    ".Messages": "messages",
}
_MSG_FIELDS = {".Role": "message.role", ".Content": "message.content"}

# the system text Ollama gives `.System`: the conversation's system messages, joined
_PRELUDE = (
    "{%- set system_text = messages | selectattr('role', 'equalto', 'system') "
    "| map(attribute='content') | join('\\n') -%}\n"
)


def is_jinja(template: str) -> bool:
    """Jinja chat templates use `{% ... %}` statements; Go templates never do."""
    return "{%" in template


@dataclass
class _Scope:
    in_range: bool = False
    index_var: str | None = None
    item_var: str | None = None


def to_jinja(template: str) -> str:
    """The Jinja chat template for an Ollama Go template; UserInputError names what cannot
    be translated."""
    if is_jinja(template):
        return template
    pieces = _translate(template)
    if ".Messages" in template:
        return _PRELUDE + "{%- set system = system_text -%}" + "".join(p for p, _ in pieces)
    # legacy one-turn template: rendered once per user turn with that turn's prompt and the
    # answer that followed; the text after `.Response` closes only answered turns
    cut = next((i for i, (_, raw) in enumerate(pieces) if raw == ".Response"), len(pieces))
    head = "".join(p for p, _ in pieces[:cut])
    tail = "".join(p for p, _ in pieces[cut + 1 :])
    answer = "{{ response }}" if cut < len(pieces) else ""
    return (
        _PRELUDE + "{%- set turns = messages | rejectattr('role', 'equalto', 'system') | list -%}\n"
        "{%- for m in turns -%}{%- if m.role == 'user' -%}"
        "{%- set system = system_text if loop.first else '' -%}"
        "{%- set prompt = m.content -%}"
        "{%- set following = turns[loop.index] if loop.index < turns | length else none -%}"
        "{%- set response = following.content if following and following.role == 'assistant' else '' -%}"
        + head
        + answer
        + "{% if following %}"
        + tail
        + "{% endif %}{%- endif -%}{%- endfor -%}"
    )


def _translate(template: str) -> list[tuple[str, str]]:
    """(jinja text, the Go action's trimmed body or '' for text) per piece."""
    # Go trims whitespace next to `{{-` / `-}}` itself; the text then goes out as Jinja
    # string expressions, so Jinja's trim_blocks / lstrip_blocks cannot touch it
    parts: list[tuple[str, str, str, str]] = []  # (text before, left, body, right)
    pos = 0
    for match in _ACTION.finditer(template):
        parts.append(
            (template[pos : match.start()], match.group(1), match.group(2).strip(), match.group(3))
        )
        pos = match.end()
    parts.append((template[pos:], "", "", ""))
    out: list[tuple[str, str]] = []
    scopes: list[_Scope] = [_Scope()]
    blocks: list[str] = []
    trim_next = False
    for i, (text, left, body, right) in enumerate(parts):
        if trim_next:
            text = text.lstrip()
        if left:
            text = text.rstrip()
        trim_next = bool(right)
        if text:
            out.append(("{{ " + repr(text) + " }}", ""))
        if i == len(parts) - 1 or body.startswith("/*"):
            continue  # the end, or a comment
        out.append(_action(body, scopes, blocks))
    if blocks:
        raise UserInputError(f"TEMPLATE: a `{blocks[-1]}` block is never closed with {{{{ end }}}}")
    return out


def _action(body: str, scopes: list[_Scope], blocks: list[str]) -> tuple[str, str]:
    words = body.split(None, 1)
    keyword = words[0] if words else ""
    rest = words[1] if len(words) > 1 else ""
    if keyword == "if":
        blocks.append("if")
        return f"{{% if {_expr(rest, scopes[-1])} %}}", ""
    if keyword == "else":
        if rest.startswith("if "):
            return f"{{% elif {_expr(rest[3:], scopes[-1])} %}}", ""
        if rest:
            raise UserInputError(f"TEMPLATE: cannot translate `{{{{ {body} }}}}`")
        return "{% else %}", ""
    if keyword == "range":
        scopes.append(_range_scope(rest))
        blocks.append("range")
        return "{% for message in messages %}", ""
    if keyword == "end":
        if not blocks:
            raise UserInputError("TEMPLATE: `{{ end }}` without an opening if/range")
        kind = blocks.pop()
        if kind == "range":
            scopes.pop()
        return f"{{% end{'for' if kind == 'range' else 'if'} %}}", ""
    if keyword in ("with", "define", "template", "block", "break", "continue"):
        raise UserInputError(
            f"TEMPLATE: `{keyword}` cannot be translated to a chat template; write the "
            "TEMPLATE with if/range over .Messages, or give a Jinja template"
        )
    return f"{{{{ {_expr(body, scopes[-1])} }}}}", body


def _range_scope(rest: str) -> _Scope:
    names = re.fullmatch(r"(?:(\$\w+)\s*(?:,\s*(\$\w+))?\s*:=\s*)?(\$?\.Messages)", rest.strip())
    if names is None:
        raise UserInputError(
            f"TEMPLATE: only `range .Messages` can be translated, not `range {rest.strip()}`"
        )
    first, second = names.group(1), names.group(2)
    if second:
        return _Scope(True, first, second)
    return _Scope(True, None, first)


def _expr(text: str, scope: _Scope) -> str:
    tokens = _TOKEN.findall(text)
    value, rest = _parse(tokens, scope, top=True)
    if rest:
        raise UserInputError(f"TEMPLATE: cannot translate `{text}`")
    return value


def _parse(tokens: list[str], scope: _Scope, top: bool = False) -> tuple[str, list[str]]:
    if not tokens:
        raise UserInputError("TEMPLATE: an empty {{ }} action")
    head, rest = tokens[0], tokens[1:]
    if head in _FUNCS:
        args: list[str] = []
        while rest and rest[0] != ")":
            arg, rest = _term(rest, scope)
            args.append(arg)
        return _call(head, args), rest
    value, rest = _term(tokens, scope)
    if top and rest:
        raise UserInputError(f"TEMPLATE: cannot translate `{' '.join(tokens)}`")
    return value, rest


def _call(func: str, args: list[str]) -> str:
    if func == "not" and len(args) == 1:
        return f"(not {args[0]})"
    if func in ("and", "or") and len(args) >= 2:
        return "(" + f" {func} ".join(args) + ")"
    if func in ("eq", "ne") and len(args) >= 2:
        if func == "ne":
            return f"({args[0]} != {args[1]})"
        return "(" + " or ".join(f"{args[0]} == {a}" for a in args[1:]) + ")"
    raise UserInputError(f"TEMPLATE: `{func}` with {len(args)} arguments cannot be translated")


def _term(tokens: list[str], scope: _Scope) -> tuple[str, list[str]]:
    head, rest = tokens[0], tokens[1:]
    if head == "(":
        value, rest = _parse(rest, scope)
        if not rest or rest[0] != ")":
            raise UserInputError("TEMPLATE: a `(` without its `)`")
        return f"({value})", rest[1:]
    if head.startswith(('"', "`")):
        return repr(head[1:-1] if head.startswith("`") else _go_string(head)), rest
    if head.startswith("$."):
        field = head[1:]
        if field in _TOP_FIELDS:
            return _TOP_FIELDS[field], rest
    elif head.startswith("$") and "." in head:
        var, _, field = head.partition(".")
        if var == scope.item_var and f".{field}" in _MSG_FIELDS:
            return _MSG_FIELDS[f".{field}"], rest
    elif head == scope.index_var and head:
        return "loop.index0", rest
    elif head.startswith("."):
        if scope.in_range and head in _MSG_FIELDS:
            return _MSG_FIELDS[head], rest
        if not scope.in_range and head in _TOP_FIELDS:
            return _TOP_FIELDS[head], rest
    raise UserInputError(
        f"TEMPLATE: `{head}` cannot be translated (hearth translates .System, .Prompt, "
        ".Response, range .Messages with .Role/.Content, if/else, eq/ne/and/or/not); give the "
        "TEMPLATE as a Jinja chat template instead"
    )


def _go_string(token: str) -> str:
    import json

    try:
        value = json.loads(token)
    except ValueError:
        raise UserInputError(f"TEMPLATE: bad string literal {token}") from None
    return str(value)
