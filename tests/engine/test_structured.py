"""Structured output end to end through hearth's engine on real SmolLM2: every schema of
the corpus (tests/engine/data/schemas), regexes, GBNF and Lark grammars and forced tool
calls, decoded at temperature 0 and 1 under the grammar mask, parse and validate — 100%.
Unconstrained sequences batched with constrained ones are unaffected.
(The spec, compiler and matcher units are in test_structured_units.py.)"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from hearth.engine.llm import LLM
from hearth.engine.sampling_params import SamplingParams
from hearth.engine.structured import StructuredSpec, compiler_for
from hearth.engine.tool_calls import ToolParser, tool_call_spec

SCHEMAS = sorted((Path(__file__).parent / "data" / "schemas").glob("*.json"))
MAX_TOKENS = 64
FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


@pytest.fixture(scope="module")
def llm(smollm2_gguf: Path) -> Iterator[LLM]:
    llm = LLM(smollm2_gguf, kv_cache_gb=0.25, max_model_len=512, max_num_batched_tokens=512,
              max_num_seqs=64)
    yield llm
    assert not llm.engine.requests


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def run(llm: LLM, prompts: list[str], specs: list[StructuredSpec | None],
        temperature: float | list[float], max_tokens: int = MAX_TOKENS) -> list[Any]:
    """One continuous batch; row i samples with seed 1000 + i."""
    temps = temperature if isinstance(temperature, list) else [temperature] * len(specs)
    params = [
        SamplingParams(temperature=t, seed=1000 + i, max_tokens=max_tokens, structured=s)
        for i, (s, t) in enumerate(zip(specs, temps, strict=True))
    ]
    return [o.outputs[0] for o in llm.chat([ask(p) for p in prompts], params)]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_schema_corpus_validates(llm: LLM, temperature: float) -> None:
    schemas = [json.loads(p.read_text()) for p in SCHEMAS]
    assert len(schemas) >= 50
    prompts = [f"Give an example {s.get('title', 'value')} as JSON." for s in schemas]
    outs = run(llm, prompts, [StructuredSpec.json_schema(s) for s in schemas], temperature)
    failures = []
    for path, schema, out in zip(SCHEMAS, schemas, outs, strict=True):
        try:
            assert out.finish_reason == "stop", f"finish_reason {out.finish_reason}"
            jsonschema.validate(json.loads(out.text), schema, format_checker=FORMATS)
        except (AssertionError, ValueError, jsonschema.ValidationError) as exc:
            failures.append(f"{path.name}: {out.text!r}: {str(exc)[:200]}")
    assert not failures, "\n".join(failures)
    stats = compiler_for(llm.tokenizer).stats
    assert stats.constrained_requests >= len(schemas) and stats.mask_steps > 0


GRAMMARS = [
    ("Write a US phone number.", StructuredSpec.regex(r"\(\d{3}\) \d{3}-\d{4}"),
     re.compile(r"\(\d{3}\) \d{3}-\d{4}")),
    ("What is the date today?", StructuredSpec.regex(r"20[0-9]{2}-(0[1-9]|1[0-2])-[0-2][0-9]"),
     re.compile(r"20[0-9]{2}-(0[1-9]|1[0-2])-[0-2][0-9]")),
    ("Is the sky blue? Answer.", StructuredSpec.regex(r"(yes|no), because [a-z ]{1,30}\."),
     re.compile(r"(yes|no), because [a-z ]{1,30}\.")),
    ("Compute something.", StructuredSpec.grammar(
        'root ::= num " " op " " num " = " num\nop ::= "+" | "-" | "*"\nnum ::= [1-9] [0-9]?'),
     re.compile(r"[1-9][0-9]? [+*-] [1-9][0-9]? = [1-9][0-9]?")),
    ("List two fruits.", StructuredSpec.grammar(
        'start: item ", " item\nitem: FRUIT\nFRUIT: "apple" | "pear" | "plum" | "kiwi"'),
     re.compile(r"(apple|pear|plum|kiwi), (apple|pear|plum|kiwi)")),
    ("Give me a JSON object.", StructuredSpec.json_object(), None),
]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_regex_and_grammar_outputs_match(llm: LLM, temperature: float) -> None:
    outs = run(llm, [g[0] for g in GRAMMARS], [g[1] for g in GRAMMARS], temperature)
    for (_, spec, pattern), out in zip(GRAMMARS, outs, strict=True):
        assert out.finish_reason == "stop", (spec, out.text)
        if pattern is None:
            assert isinstance(json.loads(out.text), dict)
        else:
            assert pattern.fullmatch(out.text), (spec, out.text)


TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather now",
     "parameters": {"type": "object", "properties": {
         "city": {"type": "string", "maxLength": 20},
         "unit": {"enum": ["celsius", "fahrenheit"]}},
         "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99},
                                         "b": {"type": "integer", "minimum": 0, "maximum": 99}},
        "required": ["a", "b"], "additionalProperties": False}}},
]


@pytest.mark.parametrize("fmt", ["hermes", "llama3", "mistral"])
def test_forced_tool_calls_validate(llm: LLM, fmt: str) -> None:
    choices: list[Any] = ["required", {"type": "function", "function": {"name": "add"}}]
    specs = [tool_call_spec(TOOLS, c, fmt) for c in choices for _ in (0, 1)]
    prompts = ["What is the weather in Paris?", "What is 2 plus 3?"] * 2
    temps = [0.0, 1.0, 0.0, 1.0]
    outs = run(llm, prompts, specs, temps)
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for i, out in enumerate(outs):
        assert out.finish_reason == "stop", out.text
        content, calls = ToolParser(fmt).parse(out.text)
        assert content == "" and len(calls) == 1, out.text
        if i >= 2:
            assert calls[0].name == "add"
        jsonschema.validate(json.loads(calls[0].arguments_json), schemas[calls[0].name])
        stream = ToolParser(fmt).stream()
        deltas = [d for ch in out.text for d in stream.feed(ch)[1]] + stream.finish()[1]
        assert deltas[0].name == calls[0].name
        assert "".join(d.arguments for d in deltas) == calls[0].arguments_json


def test_unconstrained_rows_unaffected_by_constrained_ones(llm: LLM) -> None:
    prompts = ["Name a color.", "Say hello.", "Give an example person as JSON."]
    alone = run(llm, prompts[:2], [None, None], 0.0, max_tokens=12)
    schema = json.loads(SCHEMAS[0].read_text())
    mixed = run(llm, prompts, [None, None, StructuredSpec.json_schema(schema)], 0.0, max_tokens=12)
    assert [o.token_ids for o in mixed[:2]] == [o.token_ids for o in alone]
