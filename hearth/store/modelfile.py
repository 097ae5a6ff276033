"""Ollama's Modelfile: parse the text (its `parser/parser.go` grammar: one directive per line,
case-insensitive; values bare, "quoted" or \"\"\"triple-quoted\"\"\" over several lines; `#`
comments) into a `Modelfile`, and write one back (`hearth show --modelfile`). Every mistake
names its line and what is allowed. Knows nothing of the store, tensors or templates' meaning.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hearth.errors import UserInputError

DIRECTIVES = (
    "FROM", "ADAPTER", "DRAFT", "TEMPLATE", "SYSTEM", "PARAMETER", "MESSAGE", "LICENSE",
)  # fmt: skip
ROLES = ("system", "user", "assistant")


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1"):
        return True
    if text.lower() in ("false", "0"):
        return False
    raise ValueError(text)


# Ollama's option names (api/types.go Options) and how each value reads; `stop` repeats
PARAMETERS: Mapping[str, Callable[[str], Any]] = {
    "temperature": float,
    "top_k": int,
    "top_p": float,
    "min_p": float,
    "typical_p": float,
    "num_ctx": int,
    "num_predict": int,
    "num_keep": int,
    "stop": str,
    "repeat_penalty": float,
    "repeat_last_n": int,
    "presence_penalty": float,
    "frequency_penalty": float,
    "seed": int,
    "penalize_newline": _bool,
    "num_batch": int,
    "num_thread": int,
}


@dataclass
class Modelfile:
    """What a Modelfile says. `parameters` keeps Ollama's names; `stop` is a list."""

    from_: str
    adapters: list[str] = field(default_factory=list)
    draft: str | None = None  # Ollama's DRAFT: the draft model of speculative decoding
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)

    def render(self) -> str:
        """Modelfile text that parses back to this (quoting what needs it)."""
        lines = [f"FROM {self.from_}"]
        lines += [f"ADAPTER {a}" for a in self.adapters]
        if self.draft is not None:
            lines.append(f"DRAFT {self.draft}")
        if self.template is not None:
            lines.append(f"TEMPLATE {_quote(self.template)}")
        if self.system is not None:
            lines.append(f"SYSTEM {_quote(self.system)}")
        for name, value in self.parameters.items():
            for v in value if isinstance(value, list) else [value]:
                text = str(v).lower() if isinstance(v, bool) else str(v)
                lines.append(f"PARAMETER {name} {_quote(text) if name == 'stop' else text}")
        lines += [f"MESSAGE {m['role']} {_quote(m['content'])}" for m in self.messages]
        lines += [f"LICENSE {_quote(text)}" for text in self.licenses]
        return "\n".join(lines) + "\n"


def parse_parameter(name: str, value: Any) -> Any:
    """The typed value of an Ollama parameter; ValueError naming the allowed names."""
    reader = PARAMETERS.get(name)
    if reader is None:
        raise ValueError(f"unknown parameter '{name}'; allowed: {', '.join(PARAMETERS)}")
    if isinstance(value, list) and name == "stop":
        return [str(v) for v in value]
    try:
        if reader is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        typed = reader(value) if isinstance(value, str) else reader(str(value))
    except ValueError:
        kinds: dict[Any, str] = {int: "an integer", float: "a number", str: "text"}
        kind = kinds.get(reader, "true or false")
        raise ValueError(f"parameter {name} must be {kind}, got {value!r}") from None
    return typed


def parse(text: str) -> Modelfile:
    """Parse Modelfile text; UserInputError names the line of the first mistake."""
    from_: str | None = None
    result = Modelfile(from_="")
    for lineno, directive, rest in _commands(text):
        where = f"Modelfile line {lineno}"
        if directive not in DIRECTIVES:
            raise UserInputError(
                f"{where}: unknown directive '{directive}'; allowed: {', '.join(DIRECTIVES)}"
            )
        if directive in ("PARAMETER", "MESSAGE"):
            head, _, tail = rest.strip().partition(" ")
            if not head or not tail.strip():
                usage = "PARAMETER NAME VALUE" if directive == "PARAMETER" else "MESSAGE ROLE TEXT"
                raise UserInputError(f"{where}: {directive} needs two values ({usage})")
            value = _unquote(tail.strip(), where)
            if directive == "PARAMETER":
                try:
                    typed = parse_parameter(head.lower(), value)
                except ValueError as exc:
                    raise UserInputError(f"{where}: {exc}") from None
                if head.lower() == "stop":
                    result.parameters.setdefault("stop", []).append(typed)
                else:
                    result.parameters[head.lower()] = typed
            else:
                if head.lower() not in ROLES:
                    raise UserInputError(
                        f"{where}: MESSAGE role '{head}' is not one of {', '.join(ROLES)}"
                    )
                result.messages.append({"role": head.lower(), "content": value})
            continue
        value = _unquote(rest.strip(), where)
        if not value and directive in ("FROM", "ADAPTER", "DRAFT"):
            raise UserInputError(f"{where}: {directive} needs a model name or a path")
        if directive == "FROM":
            from_ = value
        elif directive == "ADAPTER":
            result.adapters.append(value)
        elif directive == "DRAFT":
            result.draft = value
        elif directive == "TEMPLATE":
            result.template = value
        elif directive == "SYSTEM":
            result.system = value
        else:
            result.licenses.append(value)
    if from_ is None:
        raise UserInputError("the Modelfile has no FROM line; add `FROM MODEL` (a name or a path)")
    result.from_ = from_
    return result


def _commands(text: str) -> list[tuple[int, str, str]]:
    """(line number, DIRECTIVE, the rest) per command; a triple-quoted value runs over lines."""
    out: list[tuple[int, str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line, lineno = lines[i], i + 1
        i += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        directive, _, rest = stripped.partition(" ")
        if rest.count('"""') == 1:  # an opened triple quote: read until it closes
            while i < len(lines) and '"""' not in lines[i]:
                rest += "\n" + lines[i]
                i += 1
            if i == len(lines):
                raise UserInputError(f'Modelfile line {lineno}: the """ opened here never closes')
            rest += "\n" + lines[i]
            i += 1
        out.append((lineno, directive.upper(), rest))
    return out


def _unquote(value: str, where: str) -> str:
    if '"""' in value:
        start = value.index('"""')
        end = value.rindex('"""')
        if end == start or value[end + 3 :].strip():
            raise UserInputError(f'{where}: text after the closing """')
        return value[start + 3 : end]
    if value.startswith('"'):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            raise UserInputError(
                f"{where}: the quoted value {value[:40]!r} does not close"
            ) from None
        if not isinstance(decoded, str):
            raise UserInputError(f"{where}: bad quoted value {value[:40]!r}")
        return decoded
    return value


def _quote(text: str) -> str:
    if '"""' not in text and ("\n" in text or '"' in text or text != text.strip() or not text):
        return f'"""{text}"""'
    if not text or text != text.strip() or '"' in text or "\n" in text or "\\" in text:
        return json.dumps(text)
    return text
