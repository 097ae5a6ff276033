"""POST /api/create and /api/show through the official `ollama` client against a real
`hearth serve`: a model created from a stored base answers with its own defaults and
system prompt; /api/show gives back its Modelfile, parameters, template and system."""

from __future__ import annotations

from collections.abc import Iterator

import ollama
import pytest

from tests.serve.conftest import MODEL

GO_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n"
)


@pytest.fixture
def client(served) -> Iterator[ollama.Client]:  # type: ignore[no-untyped-def]
    client = ollama.Client(host=served.main.url, timeout=120)
    yield client
    client._client.close()


def test_create_show_chat_delete(client: ollama.Client) -> None:
    done = client.create(
        model="pirate",
        from_=MODEL,
        system="You are a pirate.",
        template=GO_TEMPLATE,
        parameters={"temperature": 0, "num_predict": 4, "stop": ["\n\n"]},
        messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Arr!"}],
        license="my terms",
    )
    assert done.status == "success"
    statuses = [p.status for p in client.create(model="pirate2", from_="pirate", stream=True)]
    assert statuses[-1] == "success"
    info = client.show("pirate")
    assert info.template == GO_TEMPLATE
    # the client's ShowResponse has no `system` field; Ollama's JSON has it
    raw = client._client.post("/api/show", json={"model": "pirate"}).json()
    assert raw["system"] == "You are a pirate." and raw["messages"][1]["content"] == "Arr!"
    assert info.license == "my terms" and info.details and info.details.parent_model == MODEL
    assert info.parameters and "num_predict" in info.parameters and '"\\n\\n"' in info.parameters
    assert info.modelfile and "MESSAGE assistant Arr!" in info.modelfile
    # the model's PARAMETER num_predict 4 is its default: 4 tokens at most
    reply = client.chat(model="pirate", messages=[{"role": "user", "content": "Who are you?"}])
    assert reply.eval_count is not None and 0 < reply.eval_count <= 4
    client.delete("pirate2")
    client.delete("pirate")
    assert "pirate:latest" not in [m.model for m in client.list().models]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"from_": MODEL, "parameters": {"top_k": "many"}}, "top_k must be an integer"),
        ({"from_": MODEL, "parameters": {"warmth": 1}}, "unknown parameter 'warmth'"),
        ({"from_": "/etc/passwd"}, "never files on the server"),
        ({"from_": MODEL, "template": "{{ .Tools }}"}, "cannot be translated"),
        ({"from_": "nothere:1b"}, "nothere"),
        ({"from_": MODEL, "files": {"a.gguf": "sha256:" + "0" * 64}}, "not both"),
        ({"files": {"a.gguf": "sha256:" + "0" * 64}}, "no blob sha256:000"),
        ({"files": {"../a.gguf": "sha256:" + "0" * 64}}, "is not a file name"),
    ],
)
def test_create_refusals(client: ollama.Client, kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        client.create(model="refused", **kwargs)  # type: ignore[arg-type]
    assert info.value.status_code in (400, 404) and needle in info.value.error
    assert "refused:latest" not in [m.model for m in client.list().models]
