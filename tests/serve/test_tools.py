"""Tool calling through the official `openai` and `ollama` clients against the real uvicorn
server. SmolLM2's own chat template renders no tools: tools given to it are described by
hearth's default tool-use prompt (x-hearth-tool-mode: default-prompt, tested last); the other
tool tests use the same SmolLM2 weights imported under a second name with a ChatML chat
template that renders `tools` and earlier calls in the Hermes `<tool_call>` format (what an
Ollama Modelfile TEMPLATE does). With tool_choice "required" / a named function the
arguments validate against the parameter schema every time; streamed tool-call deltas add
up to the non-streamed call; with "auto" the call the model writes is parsed out; earlier
calls and `role: "tool"` results round-trip through the template."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import ollama
import openai
import pytest
from filelock import FileLock

from hearth.tokenizer import ChatTemplate

REPO = Path(__file__).resolve().parents[2]
PLAIN = "smollm2:135m"
MODEL = "smollm2-tools:135m"
MAX = 100  # enough for any call under these schemas (strings are bounded)

TEMPLATE = """\
{%- if messages and messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}\
{% else %}{% set system = 'You are a helpful AI assistant named SmolLM, trained by Hugging Face' %}\
{% endif -%}
<|im_start|>system
{{ system }}
{%- if tools %}


You can call functions to answer. The functions are listed in <tools></tools> as JSON schemas:
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>

To call a function, answer with a JSON object holding its name and arguments between \
<tool_call></tool_call> tags:
<tool_call>
{"name": "function_name", "arguments": {"argument": "value"}}
</tool_call>
{%- endif %}<|im_end|>
{% for message in messages %}
{% if message['role'] == 'system' and loop.first %}
{% elif message['role'] == 'assistant' %}
<|im_start|>assistant
{% if message['content'] %}{{ message['content'] }}{% endif %}
{% for call in message['tool_calls'] or [] %}
<tool_call>
{"name": {{ call['function']['name'] | tojson }}, \
"arguments": {{ call['function']['arguments'] | tojson }}}
</tool_call>
{% endfor %}
<|im_end|>
{% elif message['role'] == 'tool' %}
<|im_start|>user
<tool_response>
{{ message['content'] }}
</tool_response><|im_end|>
{% else %}
<|im_start|>{{ message['role'] }}
{{ message['content'] }}<|im_end|>
{% endif %}
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}
"""


def _fn(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 30},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
    "additionalProperties": False,
}
SEARCH = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "maxLength": 30},
        "max_results": {"type": "integer", "minimum": 1, "maximum": 10},
    },
    "required": ["query", "max_results"],
    "additionalProperties": False,
}
ADD = {
    "type": "object",
    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
TOOLS = [
    _fn("get_weather", "Current weather in a city", WEATHER),
    _fn("search_web", "Search the web", SEARCH),
    _fn("add", "Add two numbers", ADD),
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
PROMPTS = [
    "What is the weather like in Paris today?",
    "Add 17 and 25, then find me flights to Rome.",
]
# earlier turns in which the assistant answered by calling get_weather: the 135M model
# follows them, so "auto" yields a real call written by the model to parse
FEW_SHOT: list[dict[str, Any]] = [
    {"role": "system", "content": "You answer every question by calling a function."},
]
for _i, _city in enumerate(("Paris", "Berlin", "Madrid")):
    FEW_SHOT += [
        {"role": "user", "content": _city},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{_i}",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": json.dumps({"city": _city})},
                }
            ],
        },
    ]
FEW_SHOT.append({"role": "user", "content": "Tokyo"})


def _tools_gguf(source: Path) -> Path:
    """SmolLM2 with the tool-rendering template, built once per machine with gguf's own
    `gguf_new_metadata` (tensors copied unchanged)."""
    cache = REPO / ".hearth-test-cache" / "smollm2-tools"
    digest = hashlib.sha256(TEMPLATE.encode()).hexdigest()[:12]
    target = cache / f"SmolLM2-135M-Instruct-tools-{digest}.gguf"
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / "build.lock")):
        if not target.exists():
            template = cache / f"{digest}.jinja"
            template.write_text(TEMPLATE)
            tmp = target.with_suffix(".part")
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "gguf.scripts.gguf_new_metadata",
                    str(source),
                    str(tmp),
                    "--chat-template-file",
                    str(template),
                    "--force",
                ],
                check=True,
                capture_output=True,
            )
            tmp.rename(target)
    return target


@pytest.fixture(scope="module")
def tools_model(served) -> Iterator[str]:  # type: ignore[no-untyped-def]
    from hearth.store import Store

    store = Store(served.settings)
    store.import_path(_tools_gguf(served.model_path), MODEL)
    served.call(served.main.state.pool.get(MODEL))  # load once, before the timed calls
    yield MODEL
    served.call(served.main.state.pool.unload(MODEL))
    store.remove([MODEL])


@pytest.fixture(scope="module")
def client(served) -> Iterator[openai.OpenAI]:  # type: ignore[no-untyped-def]
    with openai.OpenAI(
        base_url=served.main.url + "/v1", api_key="unused", max_retries=0, timeout=120
    ) as client:
        yield client


@pytest.fixture(scope="module")
def oclient(served) -> Iterator[ollama.Client]:  # type: ignore[no-untyped-def]
    client = ollama.Client(host=served.main.url, timeout=120)
    yield client
    client._client.close()


def _check_call(call: Any, allowed: set[str]) -> tuple[str, dict[str, Any]]:
    assert call.type == "function" and call.id.startswith("call_")
    name = call.function.name
    assert name in allowed
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, SCHEMAS[name])
    return name, args


CHOICES = ["required", "get_weather", "search_web", "add"]


def _concurrently(*calls: Callable[[], Any]) -> list[Any]:
    """Run client calls at once, so the server batches them (cheaper than one by one)."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(call) for call in calls]]


def _choice(choice: str) -> Any:
    return choice if choice == "required" else {"type": "function", "function": {"name": choice}}


def test_forced_call_arguments_always_validate(client: openai.OpenAI, tools_model: str) -> None:
    """Every tool_choice, greedy on one prompt and sampled (n=2) on the other: 12 calls,
    all valid."""

    def ask(choice: str, prompt: str, temperature: float, n: int) -> Callable[[], Any]:
        return lambda: client.chat.completions.create(
            model=tools_model,
            messages=[{"role": "user", "content": prompt}],
            tools=TOOLS,  # type: ignore[arg-type]
            tool_choice=_choice(choice),
            temperature=temperature,
            n=n,
            seed=11,
            max_tokens=MAX,
        )

    cases = [
        case
        for k, choice in enumerate(CHOICES)
        for case in ((choice, PROMPTS[k % 2], 0.0, 1), (choice, PROMPTS[(k + 1) % 2], 1.0, 2))
    ]
    results = _concurrently(*(ask(*case) for case in cases))
    names = set()
    for (choice, _, _, n), r in zip(cases, results, strict=True):
        allowed = set(SCHEMAS) if choice == "required" else {choice}
        assert len(r.choices) == n
        for c in r.choices:
            assert c.finish_reason == "tool_calls", c
            assert c.message.content is None
            assert c.message.tool_calls is not None and len(c.message.tool_calls) == 1
            names.add(_check_call(c.message.tool_calls[0], allowed)[0])
    assert names == set(SCHEMAS)


def _stream_calls(chunks: list[Any]) -> tuple[list[dict[str, str]], list[str | None]]:
    """The calls that streamed tool-call deltas add up to (checking the delta protocol:
    id, type and name first, then argument fragments only), and the finish reasons."""
    calls: dict[int, dict[str, str]] = {}
    reasons = []
    for chunk in chunks:
        for c in chunk.choices:
            reasons.append(c.finish_reason)
            for d in c.delta.tool_calls or []:
                if d.index not in calls:
                    assert d.id and d.type == "function" and d.function and d.function.name
                    calls[d.index] = {"id": d.id, "name": d.function.name, "arguments": ""}
                else:
                    assert d.id is None and (d.function is None or d.function.name is None)
                calls[d.index]["arguments"] += (d.function.arguments or "") if d.function else ""
    return [calls[i] for i in sorted(calls)], [r for r in reasons if r]


def test_streamed_deltas_add_up_to_the_plain_call(client: openai.OpenAI, tools_model: str) -> None:
    def kwargs(choice: str) -> dict[str, Any]:
        return dict(
            model=tools_model,
            messages=[{"role": "user", "content": PROMPTS[1]}],
            tools=TOOLS,
            tool_choice=_choice(choice),
            temperature=1.0,
            seed=5,
            max_tokens=MAX,
        )

    results = _concurrently(
        *(
            call
            for choice in ("required", "add")
            for call in (
                lambda c=choice: client.chat.completions.create(**kwargs(c)),
                lambda c=choice: list(client.chat.completions.create(**kwargs(c), stream=True)),
            )
        )
    )
    for response, chunks in zip(results[::2], results[1::2], strict=True):
        plain = response.choices[0]
        calls, reasons = _stream_calls(chunks)
        assert plain.message.tool_calls is not None
        want = [(c.function.name, c.function.arguments) for c in plain.message.tool_calls]
        assert [(c["name"], c["arguments"]) for c in calls] == want
        assert reasons == ["tool_calls"] and plain.finish_reason == "tool_calls"
        jsonschema.validate(json.loads(calls[0]["arguments"]), SCHEMAS[calls[0]["name"]])


def test_auto_parses_the_models_own_call_streamed_and_not(
    client: openai.OpenAI, tools_model: str
) -> None:
    kwargs: dict[str, Any] = dict(
        model=tools_model, messages=FEW_SHOT, tools=TOOLS[:1], temperature=0, max_tokens=MAX
    )
    response, chunks, no_tools = _concurrently(
        lambda: client.chat.completions.create(**kwargs),  # tool_choice: auto
        lambda: list(client.chat.completions.create(**kwargs, stream=True)),
        # "none": the same conversation, and no tool is called (the text stays content)
        lambda: client.chat.completions.create(**{**kwargs, "max_tokens": 12}, tool_choice="none"),
    )
    plain = response.choices[0]
    assert plain.finish_reason == "tool_calls" and plain.message.tool_calls
    name, args = _check_call(plain.message.tool_calls[0], {"get_weather"})
    assert args == {"city": "Tokyo"}
    calls, reasons = _stream_calls(chunks)
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [(name, args)]
    assert reasons == ["tool_calls"]
    none = no_tools.choices[0]
    assert none.message.tool_calls is None and none.finish_reason != "tool_calls"
    assert none.message.content


def test_tool_results_round_trip_through_the_template(
    served, client: openai.OpenAI, tools_model: str
) -> None:  # type: ignore[no-untyped-def]
    args = {"city": "Paris", "unit": "celsius"}
    call = {"id": "call_1", "type": "function"}
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {**call, "function": {"name": "get_weather", "arguments": json.dumps(args)}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
    ]
    r = client.chat.completions.create(
        model=tools_model,
        messages=messages,  # type: ignore[arg-type]
        tools=TOOLS,  # type: ignore[arg-type]
        max_tokens=1,
        temperature=0,
    )
    # the template's text for this conversation with the arguments as an object, made here
    as_object = {**call, "function": {"name": "get_weather", "arguments": args}}
    expected = [messages[0], {"role": "assistant", "content": "", "tool_calls": [as_object]}]
    text = ChatTemplate(TEMPLATE).render([*expected, messages[2]], tools=TOOLS)
    assert '"arguments": {"city": "Paris", "unit": "celsius"}' in text
    assert "<tool_response>\n18 C, sunny\n</tool_response>" in text
    tokenizer = served.main.state.pool.models[tools_model].tokenizer
    assert r.usage is not None
    assert r.usage.prompt_tokens == len(tokenizer.encode(text, add_special_tokens=False))


def _ollama_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-shaped messages as Ollama's: call arguments as objects, no ids."""
    out = []
    for m in messages:
        msg = {"role": m["role"], "content": m["content"] or ""}
        if m.get("tool_calls"):
            msg["tool_calls"] = [
                {
                    "function": {
                        "name": c["function"]["name"],
                        "arguments": json.loads(c["function"]["arguments"]),
                    }
                }
                for c in m["tool_calls"]
            ]
        out.append(msg)
    return out


def test_ollama_tools(oclient: ollama.Client, tools_model: str) -> None:
    messages = _ollama_messages(FEW_SHOT)
    # Ollama's default repeat_penalty (1.1) would change the greedy answer: turn it off
    options = {"temperature": 0, "repeat_penalty": 1.0, "num_predict": MAX}
    kwargs: dict[str, Any] = dict(
        model=tools_model, messages=messages, tools=TOOLS[:1], options=options
    )
    plain, parts = _concurrently(
        lambda: oclient.chat(**kwargs), lambda: list(oclient.chat(**kwargs, stream=True))
    )
    assert plain.message.tool_calls and len(plain.message.tool_calls) == 1
    call = plain.message.tool_calls[0].function
    assert call.name == "get_weather" and dict(call.arguments) == {"city": "Tokyo"}
    streamed = [c.function for p in parts for c in p.message.tool_calls or []]
    assert [(c.name, dict(c.arguments)) for c in streamed] == [(call.name, dict(call.arguments))]
    assert parts[-1].done and "".join(p.message.content for p in parts) == plain.message.content


def test_tools_bad_input_is_400(
    served, client: openai.OpenAI, oclient: ollama.Client, tools_model: str
) -> None:  # type: ignore[no-untyped-def]
    ask = [{"role": "user", "content": "Hi"}]

    def create(**kwargs: Any) -> Any:
        base: dict[str, Any] = dict(model=tools_model, messages=ask, max_tokens=4, tools=TOOLS)
        return client.chat.completions.create(**{**base, **kwargs})

    with pytest.raises(openai.BadRequestError, match="'absent', which is not in tools") as e:
        create(tool_choice={"type": "function", "function": {"name": "absent"}})
    assert e.value.body["param"] == "tool_choice"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError, match="no tools were given"):
        create(tools=None, tool_choice="required")
    tags = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
    unique = _fn("tag", "Tag it", {"type": "object", "properties": {"tags": tags}})
    with pytest.raises(openai.BadRequestError, match="uniqueItems"):
        create(tools=[unique], tool_choice="required")
    with pytest.raises(openai.BadRequestError, match="drop one of them"):
        create(tool_choice="required", response_format={"type": "json_object"})
    bad_call = {"id": "c", "type": "function", "function": {"name": "add", "arguments": "{no"}}
    bad_history = [
        *ask,
        {"role": "assistant", "content": None, "tool_calls": [bad_call]},
        {"role": "tool", "tool_call_id": "c", "content": "3"},
    ]
    with pytest.raises(openai.BadRequestError, match=r"messages\[1\].tool_calls\[0\]"):
        create(messages=bad_history)
    body = {"model": tools_model, "messages": ask, "tools": [{"type": "function"}]}
    r = httpx.post(served.main.url + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 400 and "tools[0]" in r.json()["error"]["message"]


def test_default_tool_prompt_for_a_template_without_tools(
    served, client: openai.OpenAI, oclient: ollama.Client, tools_model: str
) -> None:  # type: ignore[no-untyped-def]
    """SmolLM2's own template renders no tools: the default tool-use prompt goes into the
    system message, "required" / named calls are forced by the grammar (arguments validate),
    "auto" parses the call the model writes (earlier calls are shown to it in the same
    format), and the response header and /api/show say which mode was used."""

    def forced(choice: str) -> Callable[[], Any]:
        return lambda: client.chat.completions.with_raw_response.create(
            model=PLAIN, messages=[{"role": "user", "content": PROMPTS[choice == "add"]}],
            tools=TOOLS, tool_choice=_choice(choice), temperature=0,  # type: ignore[arg-type]
            max_tokens=MAX,
        )

    def auto() -> Any:
        return client.chat.completions.with_raw_response.create(
            model=PLAIN, messages=FEW_SHOT, tools=TOOLS[:1], temperature=0,  # type: ignore[arg-type]
            max_tokens=MAX,
        )

    choices = ["required", "get_weather", "add"]
    *raws, auto_raw, template_raw = _concurrently(
        *(forced(c) for c in choices), auto,
        lambda: client.chat.completions.with_raw_response.create(
            model=tools_model, messages=[{"role": "user", "content": "Hi"}], tools=TOOLS,
            max_tokens=2),  # type: ignore[arg-type]
    )
    for choice, raw in zip(choices, raws, strict=True):
        assert raw.headers["x-hearth-tool-mode"] == "default-prompt"
        c = raw.parse().choices[0]
        assert c.finish_reason == "tool_calls" and c.message.content is None, c
        assert c.message.tool_calls is not None and len(c.message.tool_calls) == 1
        _check_call(c.message.tool_calls[0], set(SCHEMAS) if choice == "required" else {choice})
    plain = auto_raw.parse().choices[0]
    assert plain.finish_reason == "tool_calls" and plain.message.tool_calls, plain
    assert _check_call(plain.message.tool_calls[0], {"get_weather"})[1] == {"city": "Tokyo"}
    assert template_raw.headers["x-hearth-tool-mode"] == "template"
    # Ollama's /api/chat takes the same road; /api/show says which one a model gets
    options = {"temperature": 0, "repeat_penalty": 1.0, "num_predict": MAX}
    answer = oclient.chat(model=PLAIN, messages=_ollama_messages(FEW_SHOT), tools=TOOLS[:1],
                          options=options)
    assert answer.message.tool_calls and answer.message.tool_calls[0].function.name == "get_weather"
    modes = {m: httpx.post(served.main.url + "/api/show", json={"model": m}, timeout=30).json()
             for m in (PLAIN, tools_model)}
    assert modes[PLAIN]["hearth_tool_mode"] == "default-prompt"
    assert modes[tools_model]["hearth_tool_mode"] == "template"
    assert "tools" in modes[PLAIN]["capabilities"]
