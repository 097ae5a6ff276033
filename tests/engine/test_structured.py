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
    # quant="none": the rates and outputs below were measured on the de-quantized reference
    llm = LLM(smollm2_gguf, quant="none", kv_cache_gb=0.75, max_model_len=512,
              max_num_batched_tokens=512, max_num_seqs=128)
    yield llm
    assert not llm.engine.requests


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def run(llm: LLM, rows: list[tuple[str, StructuredSpec | None, float]],
        max_tokens: int = MAX_TOKENS) -> list[Any]:
    """(prompt, spec, temperature) rows in one continuous batch; row i samples with seed
    1000 + i, so a row's output does not depend on what else is in the batch."""
    params = [
        SamplingParams(temperature=t, seed=1000 + i, max_tokens=max_tokens, structured=s)
        for i, (_, s, t) in enumerate(rows)
    ]
    return [o.outputs[0] for o in llm.chat([ask(p) for p, _, _ in rows], params)]


SCHEMA_DOCS = [json.loads(p.read_text()) for p in SCHEMAS]

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
]
# any JSON object: keys and strings are unbounded, so only greedy fits a 64-token budget
JSON_OBJECT = ("Give an example person as JSON with a name and an age.",
               StructuredSpec.json_object(), None)

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
# (format, tool_choice, prompt, temperature)
TOOL_ROWS: list[tuple[str, Any, str, float]] = [
    (fmt, choice, prompt, temp)
    for fmt in ("hermes", "llama3", "mistral")
    for choice, prompt in (("required", "What is the weather in Paris?"),
                           ({"type": "function", "function": {"name": "add"}}, "What is 2 plus 3?"))
    for temp in (0.0, 1.0)
]


@pytest.fixture(scope="module")
def outputs(llm: LLM) -> dict[str, list[Any]]:
    """Everything this file decodes, as one continuous batch (the CPU budget is tight):
    the corpus at temperature 0 and 1, the regexes and grammars at 0 and 1, forced tool
    calls in the three formats."""
    groups: dict[str, list[tuple[str, StructuredSpec | None, float]]] = {
        f"corpus-{t}": [(f"Give an example {s.get('title', 'value')} as JSON.",
                         StructuredSpec.json_schema(s), t) for s in SCHEMA_DOCS]
        for t in (0.0, 1.0)
    }
    for t in (0.0, 1.0):
        extra = [JSON_OBJECT] if t == 0.0 else []
        groups[f"grammar-{t}"] = [(p, spec, t) for p, spec, _ in GRAMMARS + extra]
    groups["tools"] = [(p, tool_call_spec(TOOLS, c, f), t) for f, c, p, t in TOOL_ROWS]
    rows = [r for g in groups.values() for r in g]
    outs = run(llm, rows)
    result, i = {}, 0
    for name, g in groups.items():
        result[name], i = outs[i : i + len(g)], i + len(g)
    return result


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_schema_corpus_validates(outputs: dict[str, list[Any]], llm: LLM,
                                 temperature: float) -> None:
    assert len(SCHEMA_DOCS) >= 50
    failures = []
    for path, schema, out in zip(SCHEMAS, SCHEMA_DOCS, outputs[f"corpus-{temperature}"],
                                 strict=True):
        try:
            assert out.finish_reason == "stop", f"finish_reason {out.finish_reason}"
            jsonschema.validate(json.loads(out.text), schema, format_checker=FORMATS)
        except (AssertionError, ValueError, jsonschema.ValidationError) as exc:
            failures.append(f"{path.name}: {out.text!r}: {str(exc)[:200]}")
    assert not failures, "\n".join(failures)
    stats = compiler_for(llm.tokenizer).stats
    assert stats.constrained_requests >= len(SCHEMA_DOCS) and stats.mask_steps > 0


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_regex_and_grammar_outputs_match(outputs: dict[str, list[Any]],
                                         temperature: float) -> None:
    grammars = GRAMMARS + ([JSON_OBJECT] if temperature == 0.0 else [])
    for (_, spec, pattern), out in zip(grammars, outputs[f"grammar-{temperature}"], strict=True):
        assert out.finish_reason == "stop", (spec, out.text)
        if pattern is None:
            assert isinstance(json.loads(out.text), dict)
        else:
            assert pattern.fullmatch(out.text), (spec, out.text)


def test_forced_tool_calls_validate(outputs: dict[str, list[Any]]) -> None:
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for (fmt, choice, _, _), out in zip(TOOL_ROWS, outputs["tools"], strict=True):
        assert out.finish_reason == "stop", out.text
        content, calls = ToolParser(fmt).parse(out.text)
        assert content == "" and len(calls) == 1, out.text
        if choice != "required":
            assert calls[0].name == "add"
        jsonschema.validate(json.loads(calls[0].arguments_json), schemas[calls[0].name])
        stream = ToolParser(fmt).stream()
        deltas = [d for ch in out.text for d in stream.feed(ch)[1]] + stream.finish()[1]
        assert deltas[0].name == calls[0].name
        assert "".join(d.arguments for d in deltas) == calls[0].arguments_json


def test_unconstrained_rows_unaffected_by_constrained_ones(llm: LLM) -> None:
    plain = [("Name a color.", None, 0.0), ("Say hello.", None, 1.0)]
    constrained = [("Give an example person as JSON.", StructuredSpec.json_schema(SCHEMA_DOCS[0]),
                    0.0), ("Pick one.", StructuredSpec.regex("(red|blue)"), 1.0)]
    alone = run(llm, plain, max_tokens=8)
    mixed = run(llm, plain + constrained, max_tokens=8)
    assert [o.token_ids for o in mixed[:2]] == [o.token_ids for o in alone]


# the looping cases of issue 30: SmolLM2 writes digits until the budget runs out
CITY = {"type": "object", "properties": {
    "city": {"type": "string"}, "population": {"type": "integer"}, "area_km2": {"type": "number"}},
    "required": ["city", "population", "area_km2"], "additionalProperties": False}
PRODUCT = {"type": "object", "properties": {
    "name": {"type": "string"}, "sku": {"type": "string"},
    "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["name", "sku", "tags"], "additionalProperties": False}


def test_small_budgets_still_give_valid_json(llm: LLM) -> None:
    """At max_tokens the JSON is closed (finish_reason "length", the text parses and
    validates); a budget below the shortest document is flagged, never passed off."""
    cases = [(schema, prompt, budget, temp)
             for schema, prompt in ((CITY, "Give the population and area of Tokyo as JSON."),
                                    (PRODUCT, "Invent a product with a very long SKU as JSON."))
             for budget in (24, 40) for temp in (0.0, 1.0)]
    params = [SamplingParams(temperature=t, seed=3, max_tokens=b,
                             structured=StructuredSpec.json_schema(s)) for s, _, b, t in cases]
    params.append(SamplingParams(temperature=0.0, max_tokens=10,
                                 structured=StructuredSpec.json_schema(CITY)))
    prompts = [ask(p) for _, p, _, _ in cases] + [ask("Tokyo as JSON.")]
    outs = [o.outputs[0] for o in llm.chat(prompts, params)]
    for (schema, _, budget, _), out in zip(cases, outs, strict=False):
        assert len(out.token_ids) <= budget and not out.structure_incomplete, out.text
        jsonschema.validate(json.loads(out.text), schema)
        assert out.finish_reason in ("stop", "length")
    assert any(o.finish_reason == "length" for o in outs[:-1])  # some were closed early
    tiny = outs[-1]  # 10 tokens cannot hold the shortest CITY document
    assert tiny.finish_reason == "length" and tiny.structure_incomplete
