"""LoRA adapters on the served SmolLM2 through the official `openai` client: a PEFT adapter
(rank 16 on all seven projections, random A and B) hot-loaded with vLLM's
/v1/load_lora_adapter, listed in /v1/models with its parent, selected by `model`, batched
with the base and a second adapter (each request's text equals its text alone), counted in
/metrics, then unloaded; the same adapter as a GGUF LoRA file (hearth's gguf-lora export)
answers as its PEFT folder does, also as the ADAPTER of a model the `ollama` client creates
from the uploaded file; bad loads answer 400 / 404 with what is wrong."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from peft_adapters import gguf_lora_of, smollm2_adapter

MODEL = "smollm2:135m"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(served: Any) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=served.main.url + "/v1", api_key="unused", max_retries=0, timeout=120
    ) as client:
        yield client


@pytest.fixture(scope="module")
def loaded(served: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    root = tmp_path_factory.mktemp("smollm2-adapters")
    names = ["french", "pirate"]
    for seed, name in enumerate(names):
        folder = smollm2_adapter(root / name, seed)
        r = httpx.post(
            served.main.url + "/v1/load_lora_adapter",
            json={"lora_name": name, "lora_path": str(folder)},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        assert r.text == f"Success: LoRA adapter '{name}' added successfully."
    yield names
    for name in names:
        httpx.post(served.main.url + "/v1/unload_lora_adapter", json={"lora_name": name})


def _answer(client: openai.OpenAI, model: str) -> str:
    r = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=8, temperature=0)
    assert r.model == model
    return r.choices[0].message.content or ""


def test_adapters_are_models_with_their_parent(client: openai.OpenAI, loaded: list[str]) -> None:
    cards = {m.id: m for m in client.models.list()}
    for name in loaded:
        assert (cards[name].model_extra or {})["parent"] == MODEL
    assert client.models.retrieve("french").model_extra["parent"] == MODEL  # type: ignore[index]


def test_requests_of_base_and_adapters_batched_give_their_texts_alone(
    client: openai.OpenAI, loaded: list[str], served: Any
) -> None:
    models = [MODEL, "french", "pirate", "french"]
    alone = [_answer(client, m) for m in models]
    assert alone[0] == "The capital of France is Paris."
    assert alone[1] != alone[0] and alone[2] != alone[1]  # the adapters change the answer
    with ThreadPoolExecutor(len(models)) as pool:
        together = list(pool.map(lambda m: _answer(client, m), models))
    assert together == alone
    metrics = httpx.get(served.main.url + "/metrics").text
    assert f'hearth_lora_requests_total{{adapter="french",model="{MODEL}"}} 4.0' in metrics
    assert f'hearth_lora_adapters_loaded{{model="{MODEL}"}} 2.0' in metrics


def test_unknown_adapter_is_404_naming_those_loaded(
    client: openai.OpenAI, loaded: list[str]
) -> None:
    with pytest.raises(openai.NotFoundError, match="loaded adapters: french, pirate"):
        _answer(client, "klingon")


def test_bad_loads_say_what_is_wrong(served: Any, loaded: list[str], tmp_path: Path) -> None:
    url = served.main.url + "/v1/load_lora_adapter"
    big = smollm2_adapter(tmp_path / "big", 7, r=32, target_modules=["q_proj"],
                          layers_to_transform=[0])  # fmt: skip
    r = httpx.post(url, json={"lora_name": "big", "lora_path": str(big)}, timeout=60)
    assert r.status_code == 400 and "max_lora_rank is 16" in r.json()["error"]["message"]
    r = httpx.post(url, json={"lora_name": "french", "lora_path": str(big)}, timeout=60)
    assert r.status_code == 400 and "already loaded" in r.json()["error"]["message"]
    r = httpx.post(url, json={"lora_name": "none", "lora_path": str(tmp_path)}, timeout=60)
    assert r.status_code == 400 and "not a PEFT adapter folder" in r.json()["error"]["message"]
    r = httpx.post(served.main.url + "/v1/unload_lora_adapter", json={"lora_name": "nope"})
    assert r.status_code == 404 and "loaded adapters: french" in r.json()["error"]["message"]
    names = {m["id"] for m in httpx.get(served.main.url + "/v1/models").json()["data"]}
    assert "big" not in names and "none" not in names


def test_unload_then_reload(client: openai.OpenAI, served: Any, loaded: list[str]) -> None:
    before = _answer(client, "pirate")
    r = httpx.post(served.main.url + "/v1/unload_lora_adapter", json={"lora_name": "pirate"})
    assert r.status_code == 200
    with pytest.raises(openai.NotFoundError):
        _answer(client, "pirate")
    assert "pirate" not in {m.id for m in client.models.list()}
    model = served.main.state.pool.models[MODEL]
    folder = model.llm.engine.adapters.adapters.get("french").path.parent / "pirate"
    r = httpx.post(
        served.main.url + "/v1/load_lora_adapter",
        json={"lora_name": "pirate", "lora_path": str(folder)},
        timeout=60,
    )
    assert r.status_code == 200
    assert _answer(client, "pirate") == before
    bm = model.llm.engine.block_manager
    assert bm.num_used_blocks == 0  # nothing leaked by the unload


def test_a_gguf_lora_answers_as_its_peft_folder(
    client: openai.OpenAI, served: Any, loaded: list[str], tmp_path: Path
) -> None:
    model = served.main.state.pool.models[MODEL]
    folder = model.llm.engine.adapters.adapters.get("french").path
    gguf_file = gguf_lora_of(folder, tmp_path / "french.gguf", 30, 9, 3)
    url = served.main.url + "/v1/load_lora_adapter"
    r = httpx.post(url, json={"lora_name": "french-gguf", "lora_path": str(gguf_file)}, timeout=60)
    assert r.status_code == 200, r.text
    try:
        assert _answer(client, "french-gguf") == _answer(client, "french")
    finally:
        httpx.post(served.main.url + "/v1/unload_lora_adapter", json={"lora_name": "french-gguf"})
    # Ollama's way: the client uploads the .gguf and creates a model with it as ADAPTER
    ollama_client = ollama.Client(host=served.main.url, timeout=300)
    try:
        digest = ollama_client.create_blob(gguf_file)
        done = ollama_client.create(model="french-made", from_=MODEL, adapters={"f.gguf": digest})
        assert done.status == "success"
        assert _answer(client, "french-made:latest") == _answer(client, "french")
        ollama_client.delete("french-made")
    finally:
        ollama_client._client.close()
    # the base model's own GGUF is not an adapter
    r = httpx.post(url, json={"lora_name": "m", "lora_path": str(served.model_path)}, timeout=60)
    assert r.status_code == 400 and "a model, not an adapter" in r.json()["error"]["message"]


def test_serve_lora_option_registers_adapters_on_the_first_model(served: Any) -> None:
    from hearth.serve.app import create_app
    from hearth.serve.options import ServeOptions

    options = ServeOptions(port=0, loras=(("sql", "/srv/sql", MODEL),))
    app = create_app(served.settings, options)  # not started: the pool's registry only
    assert app.state.hearth.pool.adapters.of_base(MODEL) == {"sql": Path("/srv/sql")}
