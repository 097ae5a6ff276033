"""Embedding and rerank models behind a real `hearth serve` (uvicorn on 127.0.0.1): the
official `openai` client's embeddings.create and the `ollama` client's embed with the real
all-MiniLM (equal to sentence-transformers), /v1/rerank and /rerank with a cross-encoder
(equal to sentence-transformers' CrossEncoder), the wrong kind of model and bad input as
400s that say what to do, and chat streams with embedding requests at once."""

from __future__ import annotations

import asyncio
import base64
import struct
from pathlib import Path
from typing import Any

import httpx
import pytest

CHAT = "smollm2:135m"
TEXTS = ["", "hello world", "🙂🚀 emoji", "The heron waited at the river bank for fish."]


@pytest.fixture
def server(embed_served: Any) -> Any:
    return embed_served


@pytest.fixture(scope="module")
def reference(all_minilm_folder: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(all_minilm_folder), device="cpu")


def _cosines(got: list[list[float]], want: Any) -> list[float]:
    import torch

    a = torch.tensor(got)
    return torch.nn.functional.cosine_similarity(a, torch.as_tensor(want)).tolist()


def test_openai_client_embeddings(server: Any, reference: Any) -> None:
    import openai

    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="none") as client:
        out = client.embeddings.create(model="all-minilm", input=TEXTS)
        short = client.embeddings.create(model="all-minilm", input="hello", dimensions=64)
    got = [d.embedding for d in out.data]
    assert [d.index for d in out.data] == [0, 1, 2, 3] and len(got[0]) == 384
    assert min(_cosines(got, reference.encode(TEXTS))) >= 0.9999
    assert out.usage.prompt_tokens > len(TEXTS) * 2
    assert len(short.data[0].embedding) == 64
    raw = httpx.post(
        f"{server.url}/v1/embeddings",
        json={"model": "all-minilm", "input": "hello world", "encoding_format": "base64"},
        timeout=60,
    ).json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == pytest.approx(got[1], abs=1e-6)


def test_ollama_client_embed(server: Any, reference: Any) -> None:
    import ollama

    with ollama.Client(host=server.url) as client:
        out = client.embed(model="all-minilm", input=TEXTS[1:])
    assert min(_cosines(list(out.embeddings), reference.encode(TEXTS[1:]))) >= 0.9999
    legacy = httpx.post(
        f"{server.url}/api/embeddings", json={"model": "all-minilm", "prompt": "hello world"}
    ).json()
    assert min(_cosines([legacy["embedding"]], reference.encode(["hello world"]))) >= 0.9999


def test_rerank_both_paths(server: Any, tiny_cross_encoder: Path) -> None:
    from sentence_transformers import CrossEncoder

    query = "where do herons fish?"
    docs = ["herons fish at the river bank", "prices rose in Q3", "🙂", "a heron"]
    want = CrossEncoder(str(tiny_cross_encoder), device="cpu").predict([(query, d) for d in docs])
    for path in ("/v1/rerank", "/rerank"):
        body = {"model": "tiny-reranker", "query": query, "documents": docs}
        out = httpx.post(server.url + path, json=body, timeout=120).json()
        results = out["results"]
        assert sorted(r["index"] for r in results) == [0, 1, 2, 3]
        scores = [r["relevance_score"] for r in results]
        assert scores == sorted(scores, reverse=True)
        for r in results:
            assert r["relevance_score"] == pytest.approx(float(want[r["index"]]), abs=1e-4)
            assert r["document"] == {"text": docs[r["index"]]}
    top = httpx.post(
        f"{server.url}/v1/rerank",
        json={**body, "top_n": 2, "return_documents": False},
        timeout=120,
    ).json()["results"]
    assert len(top) == 2 and "document" not in top[0]
    assert top[0]["index"] == int(max(range(4), key=lambda i: want[i]))


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/v1/embeddings", {"model": "all-minilm", "input": []}, "give"),
        ("/api/embed", {"model": "all-minilm", "input": []}, "give"),
        (
            "/v1/embeddings",
            {"model": "all-minilm", "input": "word " * 400},
            "402 tokens but the model takes at most 256",
        ),
        ("/v1/embeddings", {"model": "all-minilm", "input": "x", "dimensions": 385}, "at most 384"),
        ("/v1/rerank", {"model": CHAT, "query": "q", "documents": ["d"]}, "generation model"),
        ("/v1/rerank", {"model": "all-minilm", "query": "q", "documents": ["d"]}, "rerank model"),
        ("/v1/rerank", {"model": "tiny-reranker", "query": "q", "documents": []}, "at least one"),
        ("/v1/embeddings", {"model": "tiny-reranker", "input": "x"}, "rerank model"),
        (
            "/v1/chat/completions",
            {"model": "all-minilm", "messages": [{"role": "user", "content": "hi"}]},
            "embedding model",
        ),
        (
            "/api/chat",
            {"model": "all-minilm", "messages": [{"role": "user", "content": "hi"}]},
            "embedding model",
        ),
        ("/api/generate", {"model": "tiny-reranker", "prompt": "hi"}, "rerank model"),
    ],
)
def test_bad_requests_are_400s_that_say_what_to_do(
    server: Any, path: str, body: dict[str, Any], says: str
) -> None:
    r = httpx.post(server.url + path, json=body, timeout=120)
    assert r.status_code == 400, r.text
    assert says in r.text
    assert httpx.get(f"{server.url}/api/version").status_code == 200  # still serving


def test_truncate_cuts_instead(server: Any) -> None:
    body = {"model": "all-minilm", "input": "word " * 400, "truncate": True}
    out = httpx.post(f"{server.url}/v1/embeddings", json=body, timeout=120).json()
    assert out["usage"]["prompt_tokens"] == 256


def test_chat_streams_and_embeddings_at_once(server: Any) -> None:
    async def chat(client: httpx.AsyncClient, i: int) -> str:
        body = {
            "model": CHAT,
            "messages": [{"role": "user", "content": f"Count to {i + 3}."}],
            "max_tokens": 24,
            "temperature": 0,
            "stream": True,
        }
        text = ""
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                text += line
        return text

    async def embed(client: httpx.AsyncClient, i: int) -> int:
        body = {"model": "all-minilm", "input": [f"sentence {i} number {j}" for j in range(20)]}
        r = await client.post("/v1/embeddings", json=body)
        assert r.status_code == 200, r.text
        return len(r.json()["data"])

    async def main() -> tuple[list[str], list[int]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=300) as client:
            chats = [chat(client, i) for i in range(3)]
            embeds = [embed(client, i) for i in range(6)]
            results = await asyncio.gather(*chats, *embeds)
        return [str(r) for r in results[:3]], [int(r) for r in results[3:]]

    texts, counts = asyncio.run(main())
    assert all("[DONE]" in t for t in texts)
    assert counts == [20] * 6
