"""Request-body checks that must run on the raw bytes, before FastAPI parses them: text that
is not valid Unicode (a lone UTF-16 surrogate such as "\\ud800", which Python's JSON parser
lets through and which fails later, deep in tokenizers and regex compilers) and nesting too
deep for the recursive code downstream (JSON-schema compilation). Both are cheap on the
common body: a regex (C speed) rules them out before any parsing. Knows nothing of HTTP."""

from __future__ import annotations

import json
import re
from typing import Any

MAX_JSON_DEPTH = 100  # arrays/objects inside one another (a schema level takes two)

# an escaped surrogate, or one encoded as (invalid) UTF-8 bytes (ED A0..BF ..)
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_EMPTY_PAIR = re.compile(rb"\{\}|\[\]")


def has_lone_surrogate(body: bytes) -> bool:
    """Whether the JSON text `body` holds a string with an unpaired UTF-16 surrogate."""
    if not _MAYBE_SURROGATE.search(body):
        return False
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return False  # not JSON: the parser's own error says so
    return _walk_for_surrogates(data)


def _walk_for_surrogates(data: Any) -> bool:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def too_deep(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text `body` nests arrays/objects more than `max_depth` levels."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False
    unescaped = body
    if b"\\" in body:  # drop escaped backslashes, then escaped quotes: no quote is escaped
        unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    # with escapes gone, every other piece between quotes is outside the strings
    outside = b"".join(unescaped.split(b'"')[0::2])
    brackets = outside.translate(None, _NOT_BRACKET)
    # each pass removes the innermost pairs: what survives max_depth passes is deeper
    for _ in range(max_depth):
        brackets, removed = _EMPTY_PAIR.subn(b"", brackets)
        if not brackets or not removed:
            return False
    return bool(brackets)
