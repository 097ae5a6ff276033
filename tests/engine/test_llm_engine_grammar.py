"""The engine's structured-output call sites over the tiny llama: masks before sampling,
accept after, finish when the grammar is done; compile errors fail only their request."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from hearth.engine import structured
from hearth.engine.llm_engine import LLMEngine
from hearth.engine.outputs import RequestOutput
from hearth.engine.sampling_params import SamplingParams
from hearth.engine.structured import StructuredSpec
from hearth.errors import GrammarError

PATTERN = r"[a-z]{3,8}@[a-z]{2,5}\.(com|org)"


def _drain(engine: LLMEngine) -> dict[str, RequestOutput]:
    final: dict[str, RequestOutput] = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                final[out.request_id] = out
    return final


def test_grammar_constrains_only_its_request(make_engine: Callable[..., LLMEngine]) -> None:
    engine = make_engine()
    spec = StructuredSpec.regex(PATTERN)
    for i in range(3):
        engine.add_request(
            f"g{i}",
            "Contact:",
            SamplingParams(temperature=1.0, seed=i, max_tokens=40, structured=spec),
        )
    engine.add_request(
        "free", "Contact:", SamplingParams(temperature=1.0, seed=0, max_tokens=12, ignore_eos=True)
    )
    final = _drain(engine)
    for i in range(3):
        c = final[f"g{i}"].outputs[0]
        assert re.fullmatch(PATTERN, c.text), c.text
        assert c.finish_reason == "stop"
    free = final["free"].outputs[0]
    assert free.finish_reason == "length" and not re.fullmatch(PATTERN, free.text)


def test_grammar_compile_error_fails_its_request_only(
    make_engine: Callable[..., LLMEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    # specs are checked when built, so a compile-time failure (e.g. the tokenizer's
    # vocabulary cannot express the grammar) is injected here
    def failing(tokenizer: Any, spec: StructuredSpec) -> Any:
        raise GrammarError("cannot compile")

    monkeypatch.setattr(structured, "compile_matcher", failing)
    engine = make_engine()
    bad = StructuredSpec.regex("[0-9]+")
    engine.add_request("bad", "x", SamplingParams(max_tokens=5, structured=bad))
    engine.add_request("ok", "x", SamplingParams(max_tokens=5, ignore_eos=True))
    final = _drain(engine)
    assert isinstance(final["bad"].error, GrammarError)
    assert final["bad"].outputs[0].finish_reason == "error"
    assert final["ok"].error is None and len(final["ok"].outputs[0].token_ids) == 5
