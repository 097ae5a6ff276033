"""What a request asks its output to look like: `StructuredSpec`, built from the request
surfaces (OpenAI `response_format`, Ollama `format`, hearth's `regex=` / `grammar=`), checked
so that anything the grammar backend cannot enforce is refused up front with a
`GrammarError` naming the feature — never silently ignored — and lowered to the backend's
grammar text. Knows nothing of tokenizers, tensors or HTTP; compiling against a vocabulary
is `grammar_matcher.py`'s job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from hearth.engine.grammar_bounds import ANY_OBJECT_SCHEMA, bound_schema
from hearth.errors import GrammarError, InvalidParameterError

Kind = Literal["json_object", "json_schema", "regex", "grammar"]
KINDS: tuple[str, ...] = ("json_object", "json_schema", "regex", "grammar")

# Compact, fixed separators (as `json.dumps` writes them). Flexible whitespace lets a small
# model pad with newlines until it runs out of tokens, which truncates the JSON.
JSON_OPTIONS: dict[str, Any] = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}

_UNIMPLEMENTED = re.compile(r"Unimplemented keys: \[([^\]]*)\]")
_UNKNOWN_FORMAT = re.compile(r"Unknown format: (\S+)")
_AT_LOCATION = re.compile(r"at \d+\(\d+\): (.*)")
_REMOTE_REF = re.compile(r"Resource '([^']*)' is not present")


@dataclass(frozen=True)
class StructuredSpec:
    """A constraint on a whole completion. `value` is canonical text so specs hash and
    compare by meaning (the compile cache key): the schema as compact JSON (keys in the
    schema's own order, which is the order the output writes properties in) for
    `json_schema`; the pattern for `regex` (it must match the whole output); Lark or GBNF
    (llama.cpp EBNF) text for `grammar`; empty for `json_object` (any JSON object)."""

    kind: Kind
    value: str = ""
    # the lowered backend grammar, computed once when the spec is checked
    backend_grammar: str = field(default="", init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.value, str):
            raise ValueError(f"value must be a str, got {type(self.value).__name__}")
        if self.kind == "json_object" and self.value:
            raise ValueError("value must be empty for kind 'json_object'")
        if self.kind in ("regex", "grammar") and not self.value:
            raise GrammarError(f"the {self.kind} is empty; give a non-empty {self.kind}")
        object.__setattr__(self, "backend_grammar", _lower(self))

    # -- constructors -------------------------------------------------------------------

    @classmethod
    def json_object(cls) -> StructuredSpec:
        return cls("json_object")

    @classmethod
    def json_schema(cls, schema: Mapping[str, Any] | str | bool) -> StructuredSpec:
        """A JSON schema (dict or JSON text); checked against its metaschema and against
        what the backend enforces."""
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except json.JSONDecodeError as exc:
                raise GrammarError(f"the JSON schema is not valid JSON: {exc}") from exc
        if isinstance(schema, bool) or not isinstance(schema, Mapping):
            raise GrammarError('a JSON schema must be a JSON object such as {"type": "object"}')
        # keys keep the schema's order: the grammar writes properties in that order (as
        # OpenAI's strict mode does), so sorting them would reorder the model's output
        return cls("json_schema", json.dumps(schema, separators=(",", ":")))

    @classmethod
    def regex(cls, pattern: str) -> StructuredSpec:
        return cls("regex", pattern)

    @classmethod
    def grammar(cls, text: str) -> StructuredSpec:
        """A Lark grammar (rule `start`) or a GBNF grammar (rule `root`)."""
        return cls("grammar", text)

    @property
    def schema(self) -> dict[str, Any] | None:
        """The JSON schema as a dict (None unless kind is json_schema)."""
        return json.loads(self.value) if self.kind == "json_schema" else None

    # -- request surfaces -----------------------------------------------------------------

    @classmethod
    def from_openai_response_format(cls, obj: Mapping[str, Any] | None) -> StructuredSpec | None:
        """OpenAI `response_format`: `{"type": "text"}` (no constraint),
        `{"type": "json_object"}`, `{"type": "json_schema", "json_schema": {"name": ...,
        "schema": {...}, "strict": true}}`. hearth also takes `{"type": "regex", "regex": ...}`
        and `{"type": "grammar", "grammar": ...}`. The schema is enforced whether or not
        `strict` is set: hearth never relaxes a schema it was given."""
        if obj is None:
            return None
        if not isinstance(obj, Mapping):
            raise InvalidParameterError("response_format", "response_format must be an object")
        kind = obj.get("type")
        if kind == "text":
            return None
        if kind == "json_object":
            return cls.json_object()
        if kind == "json_schema":
            js = obj.get("json_schema")
            if not isinstance(js, Mapping) or "schema" not in js:
                raise InvalidParameterError(
                    "response_format",
                    "response_format type 'json_schema' needs "
                    '"json_schema": {"name": ..., "schema": {...}}',
                )
            return cls.json_schema(js["schema"])
        if kind in ("regex", "grammar"):
            text = obj.get(kind)
            if not isinstance(text, str):
                raise InvalidParameterError(
                    "response_format", f"response_format type '{kind}' needs a string '{kind}'"
                )
            return cls(kind, text)
        raise InvalidParameterError(
            "response_format",
            f"response_format type {kind!r} is not one of "
            "'text', 'json_object', 'json_schema', 'regex', 'grammar'",
        )

    @classmethod
    def from_ollama_format(cls, obj: str | Mapping[str, Any] | None) -> StructuredSpec | None:
        """Ollama `format`: `"json"` or a JSON schema object ("" means no constraint)."""
        if obj is None or obj == "":
            return None
        if obj == "json":
            return cls.json_object()
        if isinstance(obj, Mapping):
            return cls.json_schema(obj)
        raise InvalidParameterError("format", 'format must be "json" or a JSON schema object')

    @classmethod
    def from_request(
        cls,
        *,
        response_format: Mapping[str, Any] | None = None,
        format: str | Mapping[str, Any] | None = None,
        regex: str | None = None,
        grammar: str | None = None,
    ) -> StructuredSpec | None:
        """The one spec a request asks for, from whichever surface it used; asking for two
        at once is an error (which would win is not obvious)."""
        given = {
            "response_format": cls.from_openai_response_format(response_format),
            "format": cls.from_ollama_format(format),
            "regex": cls.regex(regex) if regex is not None else None,
            "grammar": cls.grammar(grammar) if grammar is not None else None,
        }
        present = [name for name, spec in given.items() if spec is not None]
        if len(present) > 1:
            raise InvalidParameterError(
                present[1], f"give only one of {', '.join(present)}: they all constrain the output"
            )
        return given[present[0]] if present else None


# -- checking and lowering ------------------------------------------------------------------


def _lower(spec: StructuredSpec) -> str:
    """The llguidance grammar for `spec`, after checking it; GrammarError if the backend
    would not enforce all of it."""
    import llguidance

    if spec.kind == "json_object":
        return str(
            llguidance.LLMatcher.grammar_from_json_schema(
                bound_schema(ANY_OBJECT_SCHEMA), cast(Any, JSON_OPTIONS)
            )
        )
    if spec.kind == "json_schema":
        schema = json.loads(spec.value)
        _check_metaschema(schema)
        # numbers the schema leaves open get llama.cpp's bounds (grammar_bounds.py)
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            bound_schema(schema), cast(Any, JSON_OPTIONS)
        )
    elif spec.kind == "regex":
        grammar = llguidance.LLMatcher.grammar_from_regex(spec.value)
    else:
        grammar = llguidance.LLMatcher.grammar_from_lark(_to_lark(spec.value))
    error = llguidance.LLMatcher.validate_grammar(grammar, None)
    if error:
        raise GrammarError(_explain(spec.kind, error))
    return str(grammar)


def _check_metaschema(schema: dict[str, Any]) -> None:
    import jsonschema

    validator = jsonschema.validators.validator_for(schema, jsonschema.Draft202012Validator)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise GrammarError(f"invalid JSON schema at {where}: {exc.message}") from exc


def _to_lark(text: str) -> str:
    """GBNF (`root ::= ...`) to Lark; Lark passes through unchanged."""
    if "::=" not in text:
        return text
    from llguidance.gbnf_to_lark import any_to_lark

    try:
        return str(any_to_lark(text))
    except Exception as exc:  # the converter raises bare Exceptions on bad input
        raise GrammarError(f"the GBNF grammar does not parse: {exc}") from exc


def _explain(kind: str, error: str) -> str:
    """The backend's message, led by the feature it names, with what to do about it."""
    if m := _UNIMPLEMENTED.search(error):
        keys = m.group(1).replace('"', "")
        return (
            f"JSON schema keyword(s) {keys} cannot be enforced during generation; "
            "remove them (hearth refuses rather than silently ignoring part of a schema)"
        )
    if m := _UNKNOWN_FORMAT.search(error):
        return (
            f"JSON schema string format {m.group(1)!r} is not supported; supported: date-time, "
            "date, time, duration, email, hostname, ipv4, ipv6, uri, uuid (or use 'pattern')"
        )
    if m := _REMOTE_REF.search(error):
        return (
            f"JSON schema $ref {m.group(1)!r} points outside the schema; hearth never fetches "
            "schemas: inline it under $defs and use '#/$defs/...'"
        )
    lines = [line.rstrip() for line in error.strip("\n").splitlines() if line.strip()]
    # the regex parser puts the reason on an "error: ..." line below the location; other
    # messages lead with "at LINE(COL): reason"
    reason = next(
        (ln.strip()[len("error:") :].strip() for ln in lines if ln.strip().startswith("error:")), ""
    )
    if not reason and lines and (m := _AT_LOCATION.match(lines[0])):
        reason = m.group(1)
    what = {"json_schema": "JSON schema", "regex": "regex", "grammar": "grammar"}.get(kind, kind)
    head = f"the {what} cannot be compiled" + (f": {reason}" if reason else "")
    return head + ("\n" + "\n".join(lines) if lines else "")
