"""Tool-call parsers on hand-written model outputs (Hermes/Qwen, Llama 3, Mistral):
the parse is what the text says, and streaming it in any chunking gives deltas that add up
to the same content and calls; the tool_choice grammars accept exactly the right calls."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest

from hearth.engine.structured import GrammarCompiler
from hearth.engine.tool_calls import (
    ToolCall,
    ToolParser,
    check_tools_renderable,
    default_tool_messages,
    detect_tool_format,
    normalize_tools,
    template_messages,
    tool_call_spec,
)
from hearth.errors import GrammarError, InvalidParameterError

WEATHER_ARGS = '{"city": "Paris", "unit": "celsius"}'
CASES: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    # (format, model output, content, [(name, arguments_json)])
    ("default", f'[TOOL_REQUEST]{{"name": "get_weather", "arguments": {WEATHER_ARGS}}}'
     "[END_TOOL_REQUEST]", "", [("get_weather", WEATHER_ARGS)]),
    ("default", 'Sure. [TOOL_REQUEST]{"name": "a", "arguments": {}}[END_TOOL_REQUEST]\n'
     '[TOOL_REQUEST]{"name": "b", "arguments": {"x": 1}}[END_TOOL_REQUEST] ok', "Sure. ok",
     [("a", "{}"), ("b", '{"x": 1}')]),
    ("default", "[TOOL_REQ is text", "[TOOL_REQ is text", []),
    ("hermes", "The capital is Paris.", "The capital is Paris.", []),
    ("hermes", f'<tool_call>\n{{"name": "get_weather", "arguments": {WEATHER_ARGS}}}\n</tool_call>',
     "", [("get_weather", WEATHER_ARGS)]),
    ("hermes", 'Let me check.\n<tool_call>\n{"name": "a", "arguments": {"x": [1, {"y": "}"}]}}\n'
     '</tool_call>\n<tool_call>\n{"arguments": {}, "name": "b"}\n</tool_call>',
     "Let me check.", [("a", '{"x": [1, {"y": "}"}]}'), ("b", "{}")]),
    ("hermes", '<tool_call>\n{"name": "s", "arguments": "{\\"q\\": 1}"}\n</tool_call>', "",
     [("s", '{"q": 1}')]),
    ("hermes", '<tool_call>\n{"name": "noargs"}\n</tool_call> done', " done", [("noargs", "{}")]),
    ("hermes", "a < b and <tool_cal is not a tag", "a < b and <tool_cal is not a tag", []),
    ("hermes", "<tool_call>not json</tool_call>", "<tool_call>not json</tool_call>", []),
    ("hermes", '<tool_call>\n{"name": "cut", "arguments": {"x": "unfinish', "",
     [("cut", '{"x": "unfinish')]),
    ("llama3", '{"name": "get_weather", "parameters": ' + WEATHER_ARGS + "}", "",
     [("get_weather", WEATHER_ARGS)]),
    ("llama3", '\n{"name": "f", "parameters": {"a": 1}}; {"name": "g", "parameters": {}}', "",
     [("f", '{"a": 1}'), ("g", "{}")]),
    ("llama3", '<|python_tag|>{"name": "f", "parameters": {"a": "b"}}', "", [("f", '{"a": "b"}')]),
    ("llama3", '{"answer": 42}', '{"answer": 42}', []),
    ("llama3", "Paris is the capital.", "Paris is the capital.", []),
    ("llama3", '{"name": "half", "parameters": {', '{"name": "half", "parameters": {', []),
    ("mistral", f'[TOOL_CALLS][{{"name": "get_weather", "arguments": {WEATHER_ARGS}}}]', "",
     [("get_weather", WEATHER_ARGS)]),
    ("mistral", '[TOOL_CALLS] [{"name": "a", "arguments": {"n": 1}}, {"name": "b", '
     '"arguments": {"s": "x]"}}]', "", [("a", '{"n": 1}'), ("b", '{"s": "x]"}')]),
    ("mistral", "No tools needed [TOOL", "No tools needed [TOOL", []),
]


def chunkings(text: str) -> list[list[str]]:
    rng = random.Random(len(text))
    out = [[text], list(text)]
    for _ in range(4):
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 12))))
        out.append([text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)])])
    return out


@pytest.mark.parametrize(("fmt", "text", "content", "calls"), CASES)
def test_parse(fmt: str, text: str, content: str, calls: list[tuple[str, str]]) -> None:
    got_content, got_calls = ToolParser(fmt).parse(text)
    assert got_content == content
    assert [(c.name, c.arguments_json) for c in got_calls] == calls
    for c in got_calls:
        assert c.id.startswith("call_")
        if c.name != "cut":  # the one truncated call
            json.loads(c.arguments_json)


@pytest.mark.parametrize(("fmt", "text", "content", "calls"), CASES)
def test_stream_equals_parse(fmt: str, text: str, content: str, calls: list[Any]) -> None:
    parser = ToolParser(fmt)
    for chunks in chunkings(text):
        stream = parser.stream()
        texts, deltas = [], []
        for chunk in chunks:
            t, d = stream.feed(chunk)
            texts.append(t)
            deltas += d
        t, d = stream.finish()
        texts.append(t)
        deltas += d
        assert "".join(texts) == content, chunks
        assert [(c.name, c.arguments_json) for c in ToolCall.collect(deltas)] == calls, chunks
        for index in {d.index for d in deltas}:
            mine = [d for d in deltas if d.index == index]
            assert mine[0].name is not None and mine[0].id is not None  # name first
            assert all(d.name is None and d.id is None for d in mine[1:])


def test_stream_holds_back_possible_markers_and_streams_arguments() -> None:
    stream = ToolParser("hermes").stream()
    assert stream.feed("Sure <tool") == ("Sure", [])
    assert stream.feed("_call>\n{\"name\": \"f") == ("", [])
    content, deltas = stream.feed('", "arguments": {"city": "Par')
    assert content == "" and deltas[0].name == "f" and deltas[1].arguments == '{"city": "Par'
    content, deltas = stream.feed('is"}}\n</tool_call>')
    assert [d.arguments for d in deltas] == ['is"}']
    first = ToolParser("hermes").stream().feed('<tool_call>{"name": "f", "arguments": {}}')[1][0]
    assert first.to_openai() == {
        "index": 0, "id": first.id, "type": "function", "function": {"name": "f", "arguments": ""},
    }


def test_detect_tool_format() -> None:
    qwen = "{% if tools %}<tools>{{ tool | tojson }}</tools> <tool_call>{% endif %}"
    llama = '{% if tools %}{"name": function name, "parameters": ...}<|python_tag|>{% endif %}'
    mistral = "{% if tools %}[AVAILABLE_TOOLS]{{ tools }}[/AVAILABLE_TOOLS]{% endif %}[TOOL_CALLS]"
    assert detect_tool_format(qwen) == "hermes"
    assert detect_tool_format(llama) == "llama3"
    assert detect_tool_format(mistral) == "mistral"
    assert detect_tool_format("{{ messages }}") is None
    assert detect_tool_format(None) is None
    assert check_tools_renderable(qwen, [{"type": "function"}]) == "hermes"
    assert check_tools_renderable("{{ messages }}", []) is None
    with pytest.raises(InvalidParameterError) as err:
        check_tools_renderable("{% for m in messages %}{{ m.content }}{% endfor %}", [{}])
    assert err.value.param == "tools"


TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"},
                                         "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "ping"}},
]


def test_normalize_tools() -> None:
    tools = normalize_tools(TOOLS)
    assert tools[1]["function"]["parameters"] == {"type": "object", "properties": {}}
    for bad in ([{"type": "retrieval"}], [{"function": {"name": ""}}],
                [{"function": {"name": "x", "parameters": 3}}], [TOOLS[1], TOOLS[1]]):
        with pytest.raises(InvalidParameterError) as err:
            normalize_tools(bad)  # type: ignore[arg-type]
        assert err.value.param == "tools"


def test_tool_choice_errors() -> None:
    assert tool_call_spec(TOOLS, "auto", "hermes") is None
    assert tool_call_spec(TOOLS, "none", "hermes") is None
    with pytest.raises(InvalidParameterError) as err:
        tool_call_spec(TOOLS, {"type": "function", "function": {"name": "absent"}}, "hermes")
    assert err.value.param == "tool_choice" and "absent" in str(err.value)
    with pytest.raises(InvalidParameterError):
        tool_call_spec([], "required", "hermes")
    with pytest.raises(InvalidParameterError):
        tool_call_spec(TOOLS, 42, "hermes")
    bad_schema = [{"type": "function", "function": {"name": "u", "parameters": {
        "type": "array", "uniqueItems": True}}}]
    with pytest.raises(GrammarError, match="uniqueItems"):
        tool_call_spec(bad_schema, "required", "hermes")


@pytest.fixture(scope="module")
def compiler(hf_smollm2_tokenizer: Any) -> GrammarCompiler:
    tok = hf_smollm2_tokenizer
    return GrammarCompiler(tok.backend_tokenizer, eos_ids=[tok.eos_token_id])


def accepts(compiler: GrammarCompiler, tok: Any, spec: Any, text: str) -> bool:
    m = compiler.compile(spec)
    try:
        for t in tok.encode(text, add_special_tokens=False):
            m.accept(t)
    except GrammarError:
        return False
    return m.is_accepting()


@pytest.mark.parametrize(("fmt", "good", "bad"), [
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": ' + WEATHER_ARGS + "}\n</tool_call>",
     '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'),
    ("llama3", '{"name": "get_weather", "parameters": ' + WEATHER_ARGS + "}",
     '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "kelvin"}}'),
    ("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": ' + WEATHER_ARGS + "}]",
     '[TOOL_CALLS][{"name": "get_time", "arguments": {}}]'),
])
def test_tool_choice_grammar(compiler: GrammarCompiler, hf_smollm2_tokenizer: Any,
                             fmt: str, good: str, bad: str) -> None:
    named = tool_call_spec(TOOLS, {"type": "function", "function": {"name": "get_weather"}}, fmt)
    required = tool_call_spec(TOOLS, "required", fmt)
    tok = hf_smollm2_tokenizer
    assert accepts(compiler, tok, named, good) and accepts(compiler, tok, required, good)
    assert not accepts(compiler, tok, named, bad)
    ping = good.replace("get_weather", "ping").replace(WEATHER_ARGS, "{}")
    assert accepts(compiler, tok, required, ping) and not accepts(compiler, tok, named, ping)
    content, calls = ToolParser(fmt).parse(good)
    assert content == "" and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments_json) == json.loads(WEATHER_ARGS)


def test_template_messages_round_trip_tool_results() -> None:
    _, calls = ToolParser("hermes").parse(
        '<tool_call>\n{"name": "get_weather", "arguments": ' + WEATHER_ARGS + "}\n</tool_call>")
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [c.to_openai() for c in calls]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "21 C"},
    ]
    out = template_messages(history)
    assert out[1]["content"] == ""
    assert out[1]["tool_calls"][0]["function"] == {
        "name": "get_weather", "arguments": json.loads(WEATHER_ARGS)}
    assert out[2] == history[2] and history[1]["tool_calls"][0]["function"]["arguments"] == (
        WEATHER_ARGS)  # the caller's history is not modified
    bad = [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{x"}}]}]
    with pytest.raises(InvalidParameterError) as err:
        template_messages(bad)
    assert err.value.param == "messages"


def test_default_tool_prompt_messages() -> None:
    """A template without tools gets the tools in the system message (joined to one that is
    there), earlier calls written in the default format, tool results as user turns."""
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    call = {"id": "c1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    out = default_tool_messages([
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "18 C"}], tools)
    assert out[0]["role"] == "system" and out[0]["content"].startswith("Be brief.\n\n")
    assert '"name": "get_weather"' in out[0]["content"] and "[TOOL_REQUEST]" in out[0]["content"]
    assert out[2] == {"role": "assistant", "content":
                      '[TOOL_REQUEST]{"name": "get_weather", "arguments": {"city": "Paris"}}'
                      "[END_TOOL_REQUEST]"}
    assert out[3] == {"role": "user", "content": "[TOOL_RESULT]18 C[END_TOOL_RESULT]"}
    _, calls = ToolParser("default").parse(out[2]["content"])
    assert [(c.name, json.loads(c.arguments_json)) for c in calls] == [("get_weather",
                                                                         {"city": "Paris"})]
    bare = default_tool_messages([{"role": "user", "content": "Hi"}], tools)
    assert bare[0]["role"] == "system" and bare[1] == {"role": "user", "content": "Hi"}
