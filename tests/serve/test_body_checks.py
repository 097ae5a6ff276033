"""The raw-body checks: lone UTF-16 surrogates (escaped or as bytes) and nesting depth,
without false alarms on surrogate pairs, escaped backslashes or brackets inside strings."""

from __future__ import annotations

import json
from typing import Any

from hearth.serve.body_checks import has_lone_surrogate, too_deep


def _nested(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def test_body_checks() -> None:
    assert has_lone_surrogate(json.dumps({"a": ["x", "\ud800"]}).encode())
    assert has_lone_surrogate(json.dumps({"\udc00": 1}).encode())
    assert has_lone_surrogate(b'{"a": "\xed\xa0\x80"}')  # a surrogate as UTF-8 bytes
    assert not has_lone_surrogate(json.dumps({"a": "\U0001f600 ok"}).encode())  # a pair
    assert not has_lone_surrogate(b'{"a": "\\\\ud800"}')  # an escaped backslash, then text
    assert not has_lone_surrogate(b"not json \\ud800")
    assert too_deep(json.dumps(_nested(60)).encode())
    assert not too_deep(json.dumps(_nested(40)).encode())
    assert not too_deep(json.dumps({"s": "[" * 500, "l": [[1]] * 1000}).encode())
    deep_in_strings = {"k": [{"s": '\\"{[' * 50}], "t": "\\" + "[" * 300}
    assert not too_deep(json.dumps(deep_in_strings).encode())
