"""Style features for style control, in FastChat's `conv_metadata` form: per side the
answer's token count and its markdown headers, list items and bold spans (code blocks left
out). `style_matrix` turns them into the covariates Chatbot Arena uses: for each feature
(a - b) / (a + b + 1), standardised over the battles."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

STYLE_FEATURES = ("length", "headers", "lists", "bold")
_KEYS = ("sum_assistant_{}_tokens", "header_count_{}", "list_count_{}", "bold_count_{}")

_CODE_BLOCK = re.compile(r"```[^`]*```")
_HEADER = re.compile(r"^#{1,6}\s", re.MULTILINE)
_ORDERED = re.compile(r"^\s*\d+\.\s", re.MULTILINE)
_UNORDERED = re.compile(r"^\s*[-*+]\s", re.MULTILINE)
_BOLD_STARS = re.compile(r"\*\*[^*\n]+\*\*")
_BOLD_UNDERSCORES = re.compile(r"__[^_\n]+__")


def markdown_counts(text: str, side: str) -> dict[str, dict[str, int]]:
    """FastChat's markdown counters for one side ("a" or "b") of a battle."""
    text = _CODE_BLOCK.sub("", text)
    return {
        f"header_count_{side}": {"h": len(_HEADER.findall(text))},
        f"list_count_{side}": {
            "ordered": len(_ORDERED.findall(text)),
            "unordered": len(_UNORDERED.findall(text)),
        },
        f"bold_count_{side}": {
            "**": len(_BOLD_STARS.findall(text)),
            "__": len(_BOLD_UNDERSCORES.findall(text)),
        },
    }


def conv_metadata(answer_a: str, answer_b: str, tokens_a: int, tokens_b: int) -> dict[str, object]:
    """The metadata of one battle (all assistant turns of a side joined)."""
    meta: dict[str, object] = {
        "sum_assistant_a_tokens": tokens_a,
        "sum_assistant_b_tokens": tokens_b,
    }
    meta.update(markdown_counts(answer_a, "a"))
    meta.update(markdown_counts(answer_b, "b"))
    return meta


def _value(meta: Mapping[str, object], key: str) -> float:
    value = meta.get(key, 0)
    if isinstance(value, Mapping):
        return float(sum(value.values()))
    if isinstance(value, int | float):
        return float(value)
    raise ValueError(f"conv_metadata {key} must be a number or a mapping of numbers")


def style_matrix(metadata: Sequence[Mapping[str, object]]) -> np.ndarray:
    """(battles, 4) standardised style covariates. A feature that does not vary (no answer
    has a header, say) is 0 everywhere: FastChat would divide by a zero spread."""
    a = np.array([[_value(m, k.format("a")) for k in _KEYS] for m in metadata]).reshape(-1, 4)
    b = np.array([[_value(m, k.format("b")) for k in _KEYS] for m in metadata]).reshape(-1, 4)
    diff = (a - b) / (a + b + 1.0)
    std = diff.std(axis=0)
    out = np.zeros_like(diff)
    varies = std > 0
    out[:, varies] = (diff[:, varies] - diff[:, varies].mean(axis=0)) / std[varies]
    return out
