"""The OpenAI renderers alone, on engine outputs built here (plain data, as the engine
returns them): a streamed answer adds up to the plain one, choices are numbered per prompt,
tool calls come out of the text, usage and errors go where OpenAI puts them."""

from __future__ import annotations

import json
from typing import Any

from hearth.engine.outputs import CompletionOutput, Logprob, RequestOutput
from hearth.errors import InvalidParameterError
from hearth.serve.engine_request import Usage
from hearth.serve.render_openai import OpenAIChat, OpenAICompletions

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def _decode(ids: list[int], skip_special_tokens: bool = True) -> str:
    """A byte-level vocabulary: token id t is the character chr(t) (ids below 256 here)."""
    return "".join(chr(t) for t in ids)


def _outputs(texts: list[str], *, incomplete: bool = False) -> list[RequestOutput]:
    """The engine's outputs for completions of `texts`, one character (token) per step."""
    outs = []
    for step in range(max(len(t) for t in texts)):
        choices = []
        for i, text in enumerate(texts):
            done = step >= len(text) - 1
            shown = text[: step + 1]
            new = text[step : step + 1]
            choices.append(
                CompletionOutput(
                    index=i,
                    text=shown,
                    token_ids=[ord(c) for c in shown],
                    finish_reason="stop" if done else None,
                    delta_text=new,
                    delta_token_ids=[ord(c) for c in new],
                    structure_incomplete=incomplete and done,
                )
            )
        finished = all(c.finished for c in choices)
        outs.append(RequestOutput("r", "Hi", [72, 105], choices, finished=finished))
    return outs


def _events(pieces: list[str]) -> list[Any]:
    assert all(p.startswith("data: ") and p.endswith("\n\n") for p in pieces)
    return [p[6:-2] if p[6:-2] == "[DONE]" else json.loads(p[6:-2]) for p in pieces]


USAGE = Usage(prompt_tokens=2, completion_tokens=7, ttft_s=0.1)


def test_chat_stream_adds_up_to_the_plain_answer() -> None:
    texts = ["Hello", "Hi!"]
    outs = _outputs(texts)
    plain, headers = OpenAIChat("m", _decode, "abc").whole([outs[-1]], USAGE)
    assert plain["id"] == "chatcmpl-abc" and plain["object"] == "chat.completion"
    assert [c["message"]["content"] for c in plain["choices"]] == texts
    assert plain["usage"] == {"prompt_tokens": 2, "completion_tokens": 7, "total_tokens": 9}
    assert headers == {}

    renderer = OpenAIChat("m", _decode, "abc", include_usage=True)
    pieces = [p for out in outs for p in renderer.chunks(0, out)]
    pieces += renderer.end([outs[-1]], USAGE) + renderer.trailer()
    events = _events(pieces)
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["total_tokens"] == 9
    for i, text in enumerate(texts):
        mine = [e["choices"][0] for e in events[:-2] if e["choices"][0]["index"] == i]
        assert mine[0]["delta"] == {"role": "assistant", "content": ""}
        assert "".join(c["delta"].get("content", "") for c in mine) == text
        assert [c["finish_reason"] for c in mine][-1] == "stop"
        assert all(e["usage"] is None for e in events[:-2])


def test_chat_without_usage_wanted_has_no_usage_chunk() -> None:
    outs = _outputs(["ok"])
    renderer = OpenAIChat("m", _decode, "abc")
    pieces = [p for out in outs for p in renderer.chunks(0, out)]
    assert renderer.end([outs[-1]], USAGE) == []
    assert all("usage" not in e for e in _events(pieces))


def test_chat_tool_calls_streamed_equal_plain() -> None:
    outs = _outputs([CALL])
    plain, _ = OpenAIChat("m", _decode, "x", tool_format="hermes").whole([outs[-1]], USAGE)
    choice = plain["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]["function"]
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Paris"}

    renderer = OpenAIChat("m", _decode, "x", tool_format="hermes")
    events = _events([p for out in outs for p in renderer.chunks(0, out)])
    deltas = [e["choices"][0]["delta"].get("tool_calls") or [] for e in events]
    name = "".join(d["function"].get("name") or "" for ds in deltas for d in ds)
    args = "".join(d["function"]["arguments"] for ds in deltas for d in ds)
    assert name == "get_weather" and json.loads(args) == {"city": "Paris"}
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert not any(e["choices"][0]["delta"].get("content") for e in events)


def test_chat_logprobs_and_incomplete_flag() -> None:
    out = _outputs(["ab"], incomplete=True)[-1]
    o = out.outputs[0]
    o.logprobs = [
        {97: Logprob(-0.5, rank=1, decoded="a"), 120: Logprob(-1.5, rank=2, decoded="x")},
        {98: Logprob(float("-inf"), rank=3)},
    ]
    body, headers = OpenAIChat("m", _decode, "x", top_logprobs=1).whole([out], USAGE)
    choice = body["choices"][0]
    assert choice["hearth_incomplete"] is True and headers == {"x-hearth-incomplete": "true"}
    first, second = choice["logprobs"]["content"]
    assert first["token"] == "a" and first["bytes"] == [97]
    assert [t["token"] for t in first["top_logprobs"]] == ["a"]  # rank <= 1 only
    assert second["token"] == "b" and second["logprob"] == -9999.0  # decoded here; no -inf


def test_completions_number_choices_per_prompt_and_echo() -> None:
    first, second = _outputs(["ab", "cd"])[-1], _outputs(["ef", "gh"])[-1]
    renderer = OpenAICompletions("m", _decode, "id", n=2, echo=True)
    body, _ = renderer.whole([first, second], USAGE)
    assert body["id"] == "cmpl-id" and body["object"] == "text_completion"
    assert [(c["index"], c["text"]) for c in body["choices"]] == [
        (0, "Hiab"),
        (1, "Hicd"),
        (2, "Hief"),
        (3, "High"),
    ]
    streamed = OpenAICompletions("m", _decode, "id", n=2, include_usage=True)
    events = _events(streamed.chunks(1, _outputs(["ef", "gh"])[0]) + streamed.end([], USAGE))
    assert [e["choices"][0]["index"] for e in events[:-1]] == [2, 3]
    assert events[-1]["usage"]["completion_tokens"] == 7


def test_completions_prompt_only_scoring() -> None:
    """echo with max_tokens 0: the prompt and its logprobs, no output, finish "length"."""
    out = _outputs(["z"])[-1]
    out.prompt = None  # decoded from the ids then
    out.prompt_logprobs = [None, {105: Logprob(-2.0, rank=1, decoded="i")}]
    renderer = OpenAICompletions("m", _decode, "id", echo=True, logprobs=0, keep_output=False)
    choice = renderer.whole([out], USAGE)[0]["choices"][0]
    assert choice["text"] == "Hi" and choice["finish_reason"] == "length"
    logprobs = choice["logprobs"]
    assert logprobs["tokens"] == ["H", "i"] and logprobs["token_logprobs"] == [None, -2.0]
    assert logprobs["top_logprobs"] == [None, {}] and logprobs["text_offset"] == [0, 1]


def test_errors_in_a_stream_are_openai_errors() -> None:
    piece = OpenAIChat("m", _decode, "x").error(InvalidParameterError("stop", "stop: bad"), "x")
    (event,) = _events([piece])
    assert event["error"]["message"] == "stop: bad" and event["error"]["param"] == "stop"
