"""Keeping structured output inside its token budget, so a strict schema yields valid JSON
at `max_tokens` instead of a document cut mid-value. Two parts, both pure functions of a
schema or a matcher; the engine decides when to use them. Knows nothing of the scheduler,
tensors or HTTP.

1. `bound_schema`: numbers a schema leaves unbounded get the bounds llama.cpp's
   json-schema-to-grammar converter builds in (its integral part is `[1-9][0-9]{0,15}`):
   integers of at most 16 digits (|n| <= 10**16 - 1), other numbers within +-10**16 and at
   most 10 fraction digits, no exponent (llguidance enforces the fraction bound as
   `multipleOf: 1e-10`; it cannot represent finer steps in a float). A small model that
   loops on digits (`"population": 2019000000000000...`) then has to end the number. Only
   what the schema leaves open is bounded: a schema's own minimum / maximum / multipleOf
   win. Strings and arrays stay unbounded (llama.cpp does not bound them either); the
   budget guard below closes them.
2. `closing_path`: the tokens that complete the grammar from a matcher's state, found by a
   greedy walk that the matcher checks at every step (so the path is always valid): forced
   tokens first, then one character at a time in a JSON-aware order of preference (close
   a string, then close `}` / `]`, then `,`, then the shortest values). The walk is not
   guaranteed to be the shortest path, only a valid one; the engine keeps every sequence
   able to finish along it before its budget runs out (llm_engine.py).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import llguidance

MAX_INTEGER = 10**16 - 1  # 16 digits, as llama.cpp's integral-part rule
MAX_NUMBER = 1e16
NUMBER_STEP = 1e-10  # at most 10 fraction digits

_SUBSCHEMA_KEYS = ("items", "additionalProperties", "additionalItems", "not", "contains",
                   "unevaluatedItems", "unevaluatedProperties", "propertyNames", "if", "then",
                   "else")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions",
                   "dependentSchemas")

# Any JSON value, with the bounded numbers: what `json_object` lowers to.
ANY_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"$ref": "#/$defs/value"},
    "$defs": {
        "value": {
            "anyOf": [
                {"type": ["null", "boolean", "string"]},
                {"type": "number"},
                {"type": "array", "items": {"$ref": "#/$defs/value"}},
                {"type": "object", "additionalProperties": {"$ref": "#/$defs/value"}},
            ]
        }
    },
}


def bound_schema(schema: Any) -> Any:
    """A copy of `schema` whose unbounded integers and numbers carry the bounds above."""
    if isinstance(schema, list):
        return [bound_schema(s) for s in schema]
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SUBSCHEMA_KEYS or key in _SUBSCHEMA_LISTS:
            out[key] = bound_schema(value)
        elif key in _SUBSCHEMA_MAPS and isinstance(value, Mapping):
            out[key] = {k: bound_schema(v) for k, v in value.items()}
        else:
            out[key] = value
    types = schema.get("type")
    types = [types] if isinstance(types, str) else types if isinstance(types, list) else []
    if "integer" in types or "number" in types:
        only_integers = "number" not in types
        top = MAX_INTEGER if only_integers else MAX_NUMBER
        if "maximum" not in out and "exclusiveMaximum" not in out:
            out["maximum"] = top
        if "minimum" not in out and "exclusiveMinimum" not in out:
            out["minimum"] = -top
        if not only_integers and "multipleOf" not in out:
            out["multipleOf"] = NUMBER_STEP
    return out


# -- closing ------------------------------------------------------------------------------

_PRINTABLE = [c for c in string.printable if c not in "\t\n\r\x0b\x0c"]
# outside a string: close what is open, then separate, then the shortest values
_OUTSIDE = list(dict.fromkeys([*'}],0"ntf[{-1.:', *_PRINTABLE]))
_IN_STRING = list(dict.fromkeys(['"', "a", "0", " ", *_PRINTABLE]))
_ESCAPED = list(dict.fromkeys(["n", '"', "\\", *_PRINTABLE]))


def char_tokens(llt: llguidance.LLTokenizer) -> dict[str, int]:
    """The token of each printable ASCII character that is one token by itself."""
    out: dict[str, int] = {}
    for c in _PRINTABLE:
        ids = llt.tokenize_str(c)
        if len(ids) == 1:
            out[c] = ids[0]
    return out


def scan_quotes(state: tuple[bool, bool], data: bytes) -> tuple[bool, bool]:
    """(inside a JSON string, after a backslash) once `data` follows `state`."""
    in_string, escaped = state
    for b in data:
        if escaped:
            escaped = False
        elif in_string and b == 0x5C:  # backslash
            escaped = True
        elif b == 0x22:  # quote
            in_string = not in_string
    return in_string, escaped


def closing_path(
    matcher: llguidance.LLMatcher,
    llt: llguidance.LLTokenizer,
    chars: Mapping[str, int],
    quotes: tuple[bool, bool],
    limit: int,
) -> list[int] | None:
    """Tokens that take `matcher` (left untouched) to a state where the output may end,
    at most `limit` of them; None if the walk finds none that short. The walk's text is
    then re-tokenized, which usually merges its one-character steps into fewer tokens."""
    # the walk may take a few more tokens than its merged form
    path = _walk(matcher, llt, chars, quotes, 2 * limit + 8)
    if path is None or not path:
        return path
    merged = llt.tokenize_bytes(llt.decode_bytes(path))
    if len(merged) < len(path):
        m = matcher.deep_copy()
        if m.consume_tokens(merged) and m.is_accepting():
            path = merged
    return path if len(path) <= limit else None


def _walk(
    matcher: llguidance.LLMatcher,
    llt: llguidance.LLTokenizer,
    chars: Mapping[str, int],
    quotes: tuple[bool, bool],
    limit: int,
) -> list[int] | None:
    m = matcher.deep_copy()
    path: list[int] = []
    while not m.is_accepting():
        if len(path) >= limit or m.is_error():
            return None
        forced = m.compute_ff_tokens()[: limit - len(path)]
        if forced:
            if not m.consume_tokens(forced):
                return None
            path += forced
            quotes = scan_quotes(quotes, llt.decode_bytes(forced))
            continue
        in_string, escaped = quotes
        order = _ESCAPED if escaped else _IN_STRING if in_string else _OUTSIDE
        for c in order:
            tid = chars.get(c)
            if tid is not None and m.validate_tokens([tid]) == 1:
                m.consume_token(tid)
                path.append(tid)
                quotes = scan_quotes(quotes, c.encode())
                break
        else:
            return None
    return path
