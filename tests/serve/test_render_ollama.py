"""The Ollama renderers alone, on engine outputs built here (plain data, as the engine
returns them): NDJSON pieces that add up to the plain answer, a final object with the done
reason, counts, durations in nanoseconds and /api/generate's context; chat tool calls."""

from __future__ import annotations

import json

from hearth.engine.outputs import CompletionOutput, RequestOutput
from hearth.errors import InvalidParameterError
from hearth.serve.engine_request import Usage
from hearth.serve.render_ollama import OllamaChat, OllamaGenerate

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
USAGE = Usage(prompt_tokens=2, completion_tokens=5, total_s=1.5, load_s=0.25, eval_s=0.5)


def _outputs(text: str, reason: str = "stop") -> list[RequestOutput]:
    """The engine's outputs for `text`, one character (token id = its code) per step."""
    outs = []
    for step in range(len(text)):
        done = step == len(text) - 1
        shown = text[: step + 1]
        choice = CompletionOutput(
            index=0,
            text=shown,
            token_ids=[ord(c) for c in shown],
            finish_reason=reason if done else None,
            delta_text=text[step],
            delta_token_ids=[ord(text[step])],
        )
        outs.append(RequestOutput("r", None, [1, 2], [choice], finished=done))
    return outs


def _lines(pieces: list[str]) -> list[dict]:  # type: ignore[type-arg]
    assert all(p.endswith("\n") and p.count("\n") == 1 for p in pieces)
    return [json.loads(p) for p in pieces]


def test_generate_stream_adds_up_to_the_plain_answer() -> None:
    outs = _outputs("Hello", reason="length")
    plain, headers = OllamaGenerate("m").whole([outs[-1]], USAGE)
    assert headers == {} and plain["model"] == "m" and plain["response"] == "Hello"
    assert plain["done"] is True and plain["done_reason"] == "length"
    assert plain["context"] == [1, 2, *(ord(c) for c in "Hello")]
    assert plain["total_duration"] == 1_500_000_000 and plain["load_duration"] == 250_000_000
    assert plain["prompt_eval_count"] == 2 and plain["eval_count"] == 5
    assert plain["eval_duration"] == 500_000_000

    renderer = OllamaGenerate("m")
    pieces = [p for out in outs for p in renderer.chunks(0, out)]
    lines = _lines(pieces + renderer.end([outs[-1]], USAGE) + renderer.trailer())
    assert all(line["done"] is False for line in lines[:-1])
    assert "".join(line["response"] for line in lines) == "Hello"
    last = lines[-1]
    assert last["response"] == "" and last["context"] == plain["context"]
    assert {k: v for k, v in last.items() if k != "created_at"} == {
        **{k: v for k, v in plain.items() if k != "created_at"},
        "response": "",
    }


def test_chat_pieces_and_tool_calls() -> None:
    renderer = OllamaChat("m")
    outs = _outputs("Hi")
    lines = _lines([p for out in outs for p in renderer.chunks(0, out)])
    assert [line["message"] for line in lines] == [
        {"role": "assistant", "content": "H"},
        {"role": "assistant", "content": "i"},
    ]
    (last,) = _lines(renderer.end([outs[-1]], USAGE))
    assert last["message"] == {"role": "assistant", "content": ""} and "context" not in last

    calls = _outputs(CALL)
    plain, _ = OllamaChat("m", "hermes").whole([calls[-1]], USAGE)
    expected = [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert plain["message"]["tool_calls"] == expected
    streamed = OllamaChat("m", "hermes")
    lines = _lines([p for out in calls for p in streamed.chunks(0, out)])
    assert [c for line in lines for c in line["message"].get("tool_calls", [])] == expected


def test_errors_in_a_stream_are_ollama_errors() -> None:
    piece = OllamaChat("m").error(InvalidParameterError("stop", "stop: bad"), "x")
    assert _lines([piece]) == [{"error": "stop: bad"}]
