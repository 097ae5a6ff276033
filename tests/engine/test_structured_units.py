"""StructuredSpec from each request surface, the refusals (invalid schema, keyword the
backend cannot enforce, bad regex / grammar), and the compiler / matcher mechanics on
SmolLM2's real vocabulary (hearth's Tokenizer): cache, stats, async compile, masks
(padded LM heads, batched rows, None rows untouched), accept / reject / rollback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from hearth.engine.structured import (
    GrammarCompiler,
    StructuredSpec,
    apply_masks,
    compile_matcher,
    compile_matcher_async,
    compiler_for,
)
from hearth.errors import GrammarError, InvalidParameterError

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def test_surfaces() -> None:
    js = StructuredSpec.json_schema(SCHEMA)
    assert js.kind == "json_schema" and js.schema == SCHEMA
    assert StructuredSpec.json_schema(json.dumps(SCHEMA, indent=2)) == js  # same meaning
    openai = {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA, "strict": True}}
    assert StructuredSpec.from_openai_response_format(openai) == js
    assert StructuredSpec.from_openai_response_format({"type": "json_object"}).kind == "json_object"  # type: ignore[union-attr]
    assert StructuredSpec.from_openai_response_format({"type": "text"}) is None
    assert StructuredSpec.from_openai_response_format(None) is None
    assert StructuredSpec.from_openai_response_format({"type": "regex", "regex": "a+"}) == (
        StructuredSpec.regex("a+"))
    assert StructuredSpec.from_ollama_format("json") == StructuredSpec.json_object()
    assert StructuredSpec.from_ollama_format(SCHEMA) == js
    assert StructuredSpec.from_ollama_format("") is None
    assert StructuredSpec.from_request(grammar='start: "x"') == StructuredSpec.grammar('start: "x"')
    assert StructuredSpec.from_request() is None
    assert len({js, StructuredSpec.json_schema(dict(SCHEMA)), StructuredSpec.json_object()}) == 2


@pytest.mark.parametrize(("call", "param"), [
    (lambda: StructuredSpec.from_openai_response_format({"type": "xml"}), "response_format"),
    (lambda: StructuredSpec.from_openai_response_format({"type": "json_schema"}), "response_format"),
    (lambda: StructuredSpec.from_openai_response_format([1]), "response_format"),
    (lambda: StructuredSpec.from_ollama_format("yaml"), "format"),
    (lambda: StructuredSpec.from_request(format="json", regex="a"), "regex"),
])
def test_bad_request_surface(call: Any, param: str) -> None:
    with pytest.raises(InvalidParameterError) as err:
        call()
    assert err.value.param == param


@pytest.mark.parametrize(("schema", "named"), [
    ({"type": "array", "uniqueItems": True}, "uniqueItems"),
    ({"type": "array", "contains": {"type": "string"}}, "contains"),
    ({"not": {"type": "string"}}, "not"),
    ({"if": {"type": "integer"}, "then": {"minimum": 1}}, "if"),
    ({"type": "object", "propertyNames": {"pattern": "^a"}}, "propertyNames"),
    ({"type": "object", "dependentRequired": {"a": ["b"]}}, "dependentRequired"),
    ({"type": "object", "unevaluatedProperties": False}, "unevaluatedProperties"),
    ({"type": "string", "format": "color"}, "color"),
    ({"type": "object", "properties": {"a": {}}, "maxProperties": 1}, "maxProperties"),
    ({"properties": {"a": {"$ref": "https://example.com/a.json"}}}, "https://example.com/a.json"),
])
def test_unenforceable_schema_is_refused_by_name(schema: dict[str, Any], named: str) -> None:
    with pytest.raises(GrammarError, match=named):
        StructuredSpec.json_schema(schema)


@pytest.mark.parametrize(("make", "match"), [
    (lambda: StructuredSpec.json_schema({"type": "integr"}), "invalid JSON schema at type"),
    (lambda: StructuredSpec.json_schema({"minimum": "3"}), "invalid JSON schema"),
    (lambda: StructuredSpec.json_schema("{not json"), "not valid JSON"),
    (lambda: StructuredSpec.json_schema([1]), "must be a JSON object"),
    (lambda: StructuredSpec.regex("a(b"), "unclosed group"),
    (lambda: StructuredSpec.regex(r"(a)\1"), "backreferences"),
    (lambda: StructuredSpec.regex(""), "empty"),
    (lambda: StructuredSpec.grammar("start: foo"), "unknown name"),
    (lambda: StructuredSpec.grammar("root ::= ("), "grammar"),
])
def test_bad_schema_regex_grammar(make: Any, match: str) -> None:
    with pytest.raises(GrammarError, match=match):
        make()


def test_spec_fields_are_checked() -> None:
    with pytest.raises(ValueError, match="kind"):
        StructuredSpec("xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="value"):
        StructuredSpec("json_object", "x")


@pytest.fixture(scope="module")
def tokenizer(smollm2_gguf: Path) -> Any:
    from hearth.tokenizer.loading import load_tokenizer

    return load_tokenizer(smollm2_gguf)


@pytest.fixture(scope="module")
def compiler(tokenizer: Any) -> GrammarCompiler:
    return GrammarCompiler(tokenizer, cache_size=2)


def feed(matcher: Any, tokenizer: Any, text: str) -> None:
    for t in tokenizer.encode(text, add_special_tokens=False):
        matcher.accept(t)


def test_matcher_follows_a_document(compiler: GrammarCompiler, tokenizer: Any) -> None:
    m = compiler.compile(StructuredSpec.json_schema(SCHEMA))
    assert not m.is_finished() and not m.is_accepting()
    feed(m, tokenizer, '{"a": 12')
    assert not m.is_finished()
    feed(m, tokenizer, "}")
    assert m.is_finished() and m.is_accepting()
    m.rollback(1)
    assert not m.is_finished()
    with pytest.raises(ValueError, match="num_tokens"):
        m.rollback(99)
    with pytest.raises(GrammarError, match="not allowed"):
        feed(m, tokenizer, '"x"')


def test_recursive_schema(compiler: GrammarCompiler, tokenizer: Any) -> None:
    tree = {"$defs": {"n": {"type": "object", "properties": {"k": {"type": "array", "items": {
        "$ref": "#/$defs/n"}}}, "required": ["k"], "additionalProperties": False}},
        "$ref": "#/$defs/n"}
    m = compiler.compile(StructuredSpec.json_schema(tree))
    feed(m, tokenizer, '{"k": [{"k": [{"k": []}]}, {"k": []}]}')
    assert m.is_finished()


def test_mask_allows_exactly_the_grammar(compiler: GrammarCompiler, tokenizer: Any) -> None:
    spec = StructuredSpec.regex("(yes|no)")
    m = compiler.compile(spec)
    width = tokenizer.vocab_size + 64  # a padded LM head
    logits = torch.zeros(width)
    m.fill_mask(logits)
    allowed = torch.isfinite(logits).nonzero().flatten().tolist()
    assert allowed and all(i < tokenizer.vocab_size for i in allowed)
    texts = {tokenizer.decode([i]) for i in allowed}
    assert {"yes", "no"} <= texts and all("yes".startswith(t) or "no".startswith(t) for t in texts)
    feed(m, tokenizer, "yes")
    m.fill_mask(logits := torch.zeros(width))
    assert set(torch.isfinite(logits).nonzero().flatten().tolist()) <= set(tokenizer.eos_ids)


def test_batched_masks_leave_unconstrained_rows(compiler: GrammarCompiler) -> None:
    a = compiler.compile(StructuredSpec.regex("[0-9]+"))
    b = compiler.compile(StructuredSpec.json_object())
    logits = torch.randn(4, compiler.vocab_size)
    before = logits.clone()
    apply_masks(logits, [None, a, None, b])
    assert torch.equal(logits[0], before[0]) and torch.equal(logits[2], before[2])
    single = before[1].clone()
    a.fill_mask(single)
    assert torch.equal(logits[1], single)
    assert torch.isinf(logits[3]).sum() > compiler.vocab_size // 2
    with pytest.raises(ValueError, match="B == len"):
        apply_masks(logits, [a])
    # bf16 logits take the torch (accelerator) path: same mask
    half = before.to(torch.bfloat16)
    apply_masks(half, [None, a, None, b])
    assert torch.equal(torch.isinf(half), torch.isinf(logits))
    assert torch.equal(half[0], before[0].to(torch.bfloat16))


def test_cache_stats_and_async(tokenizer: Any) -> None:
    compiler = GrammarCompiler(tokenizer, cache_size=2)
    specs = [StructuredSpec.regex(p) for p in ("a+", "b+", "c+")]
    compiler.compile(specs[0])
    compiler.compile(specs[0])
    assert (compiler.stats.compiles, compiler.stats.cache_hits) == (1, 1)
    compiler.compile(specs[1])
    compiler.compile(specs[2])  # evicts "a+", the least recently used
    compiler.compile(specs[0])
    assert compiler.stats.compiles == 4 and compiler.stats.constrained_requests == 5
    assert compiler.stats.compile_seconds > 0
    future = compiler.compile_async(StructuredSpec.json_schema(SCHEMA))
    matcher = future.result(timeout=30)
    matcher.fill_mask(torch.zeros(compiler.vocab_size))
    snap = compiler.stats.snapshot()
    assert snap["mask_steps"] == 1 and snap["mean_mask_seconds"] > 0
    compiler.close()


def test_shared_compiler_per_tokenizer(tokenizer: Any) -> None:
    assert compiler_for(tokenizer) is compiler_for(tokenizer)
    m = compile_matcher(tokenizer, StructuredSpec.regex("x"))
    assert m.compiler is compiler_for(tokenizer)
    assert compile_matcher_async(tokenizer, StructuredSpec.regex("y")).result(30).num_accepted == 0


def test_special_token_the_vocab_lacks(compiler: GrammarCompiler) -> None:
    spec = StructuredSpec.grammar('start: <|python_tag|> "x"')
    with pytest.raises(GrammarError, match="python_tag"):
        compiler.compile(spec)


# -- staying inside the token budget (grammar_bounds.py) ------------------------------------


def test_unbounded_numbers_get_llama_cpp_bounds(compiler: GrammarCompiler, tokenizer: Any) -> None:
    from hearth.engine.grammar_bounds import MAX_INTEGER, bound_schema

    schema = {"type": "object", "properties": {
        "n": {"type": "integer"}, "x": {"type": ["number", "null"]},
        "k": {"type": "integer", "minimum": 3}, "items": {"type": "array", "items": {
            "anyOf": [{"type": "integer"}, {"type": "string"}]}}}}
    bounded = bound_schema(schema)
    props = bounded["properties"]
    assert props["n"] == {"type": "integer", "minimum": -MAX_INTEGER, "maximum": MAX_INTEGER}
    assert props["x"]["multipleOf"] == 1e-10 and props["x"]["maximum"] == 1e16
    assert props["k"]["minimum"] == 3  # the schema's own bound wins
    assert props["items"]["items"]["anyOf"][0]["maximum"] == MAX_INTEGER
    assert schema["properties"]["n"] == {"type": "integer"}  # the caller's dict is untouched
    # the grammar refuses a 17th digit and a runaway fraction
    m = compiler.compile(StructuredSpec.json_schema(schema))
    ids = tokenizer.encode('{"n": ' + "1" * 30, add_special_tokens=False)
    assert m._m.validate_tokens(ids) == len(tokenizer.encode('{"n": ' + "1" * 16,
                                                            add_special_tokens=False))
    m = compiler.compile(StructuredSpec.json_object())
    ids = tokenizer.encode('{"a": 1.' + "5" * 30, add_special_tokens=False)
    assert m._m.validate_tokens(ids) < len(ids)


@pytest.mark.parametrize("prefix", [
    '{"a": "12345', '{"a": 123', '{"a": 1, "b": [{"c": [true, "x', '{"a": 1, "b": [],',
    '{"a": "q\\', '{"', '',
])
def test_closing_path_completes_the_document(compiler: GrammarCompiler, tokenizer: Any,
                                             prefix: str) -> None:
    schema = {"type": "object", "properties": {
        "a": {"type": ["integer", "string"]},
        "b": {"type": "array", "items": {"type": "object"}},
        "d": {"type": "string", "minLength": 2}},
        "required": ["a", "d"], "additionalProperties": False}
    m = compiler.compile(StructuredSpec.json_schema(schema))
    feed(m, tokenizer, prefix)
    path = m.closing_path(64)
    assert path is not None and len(path) <= 64
    text = prefix + tokenizer.decode(path)
    doc = json.loads(text)
    assert len(doc["d"]) >= 2, text
    for t in path:
        m.accept(t)
    assert m.is_accepting()
    assert m.closing_path(64) == []
    assert compiler.compile(StructuredSpec.json_schema(schema)).closing_path(3) is None


def test_fit_budget_swaps_a_token_that_leaves_no_room(compiler: GrammarCompiler,
                                                      tokenizer: Any) -> None:
    m = compiler.compile(StructuredSpec.json_schema(SCHEMA))
    feed(m, tokenizer, '{"a": 12')
    digit = tokenizer.encode("3", add_special_tokens=False)[0]
    assert m.fit_budget(digit, 5) == digit  # room to spare: the model's token stands
    closing = m.fit_budget(digit, 1)  # one token left: only "}" completes the object
    assert tokenizer.decode([closing]) == "}"


def test_properties_come_in_the_schemas_order(compiler: GrammarCompiler, tokenizer: Any) -> None:
    schema = {"type": "object", "properties": {"zeta": {"type": "integer"},
                                               "alpha": {"type": "integer"}},
              "required": ["zeta", "alpha"], "additionalProperties": False}
    m = compiler.compile(StructuredSpec.json_schema(schema))
    feed(m, tokenizer, '{"zeta": 1, "alpha": 2}')
    assert m.is_accepting()
