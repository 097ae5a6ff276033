"""Embedder against sentence-transformers (the reference, never hearth's runtime): the real
all-MiniLM-L6-v2 from its PyPI package on a few hundred sentences (empty strings, emoji,
inputs past the 256-token limit), and a tiny random cross-encoder as a reranker."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from hearth.engine import embedder as embedder_module
from hearth.engine.embedder import Embedder, auto_dtype
from hearth.engine.llm import LLM
from hearth.errors import ContextLengthError, InvalidParameterError, UserInputError

_TEXT = (
    "the river bank was quiet at dawn while a heron waited for fish and the city slept "
    "beyond hills of pine; prices rose 3.5% in Q3 — analysts blamed supply chains"
)
WORDS = _TEXT.split()


def _sentences(n: int) -> list[str]:
    rng = random.Random(7)
    out = ["", " ", "🙂", "emoji 🚀🔥 and ünïcödé: 日本語のテキスト", "a" * 300]
    out += [" ".join(rng.choice(WORDS) for _ in range(512))]  # ~600 tokens: cut to 256
    out += [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 120))) for _ in range(n)]
    return out


@pytest.fixture(scope="module")
def minilm(all_minilm_folder: Path) -> Embedder:
    return Embedder.load(all_minilm_folder, torch.float32)  # the reference road


@pytest.fixture(scope="module")
def reference(all_minilm_folder: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(all_minilm_folder), device="cpu")
    return model.encode(_sentences(250), batch_size=32, convert_to_tensor=True)


def test_all_minilm_equals_sentence_transformers(minilm: Embedder, reference: Any) -> None:
    texts = _sentences(250)
    got, counts = minilm.embed(texts, truncate=True)
    want = reference
    cosine = torch.nn.functional.cosine_similarity(got, want)
    assert cosine.min().item() >= 0.9999, cosine.argmin().item()
    torch.testing.assert_close(got.norm(dim=1), torch.ones(len(texts)))  # Normalize module
    assert max(counts) == 256 and counts[0] == 2  # [CLS] [SEP] for the empty string
    assert minilm.spec.pooling.mode == "mean" and minilm.spec.pooling.normalize


def test_auto_dtype_meets_the_bar(all_minilm_folder: Path, reference: Any) -> None:
    # the default (auto): bfloat16 projections on a CPU with native bfloat16 products (the
    # load-time probe agreed for all-MiniLM), else float32; either way every vector of these
    # hard inputs (empty, emoji, 256-token cuts) keeps 0.9999 to sentence-transformers'.
    # Where auto is float32 here, the bfloat16 road is checked too (it is CPU-independent)
    auto = Embedder.load(all_minilm_folder)
    assert auto.dtype == auto_dtype("embedding")
    roads = [auto]
    if auto.dtype != torch.bfloat16:
        roads.append(Embedder.load(all_minilm_folder, torch.bfloat16))
    for road in roads:
        got, _ = road.embed(_sentences(250), truncate=True)
        cosine = torch.nn.functional.cosine_similarity(got, reference)
        assert cosine.min().item() >= 0.9999, (road.dtype, cosine.argmin().item())
        assert got.dtype == torch.float32


def test_auto_falls_back_to_float32_when_the_probe_disagrees(
    all_minilm_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a bar no rounding can keep: where auto tries bfloat16, the probe (on the one loaded
    # weight set) turns it down and the embedder stays float32
    monkeypatch.setattr(embedder_module, "MIN_COSINE", 1.0 + 1e-6)
    assert Embedder.load(all_minilm_folder).dtype == torch.float32


def test_long_input_is_refused_with_both_lengths(minilm: Embedder) -> None:
    text = " ".join(["word"] * 600)
    with pytest.raises(ContextLengthError, match=r"602 tokens .* at most 256.*truncate"):
        minilm.embed(["short", text])


def test_token_ids_dimensions_and_bad_input(minilm: Embedder) -> None:
    ids = minilm.tokenize(["hello world"], truncate=False).ids[0]
    by_text, _ = minilm.embed(["hello world"])
    by_ids, _ = minilm.embed([ids[1:-1]])  # the special tokens are added as for a text
    torch.testing.assert_close(by_text, by_ids)
    short, _ = minilm.embed(["hello world"], dimensions=64)
    assert short.shape == (1, 64)
    torch.testing.assert_close(short.norm(dim=1), torch.ones(1))
    with pytest.raises(InvalidParameterError, match="between 1 and 384"):
        minilm.embed(["x"], dimensions=385)
    with pytest.raises(InvalidParameterError, match="at least one"):
        minilm.embed([])
    with pytest.raises(InvalidParameterError, match="not a reranker"):
        minilm.rerank("q", ["d"])


def test_rerank_equals_cross_encoder(tiny_cross_encoder: Path) -> None:
    from sentence_transformers import CrossEncoder

    query = "where do herons fish?"
    docs = ["the heron waited for fish at the river bank", "prices rose in Q3", "", "🙂" * 3]
    ranker = Embedder.load(tiny_cross_encoder)
    assert ranker.kind == "rerank"
    scores, counts = ranker.rerank(query, docs)
    want = CrossEncoder(str(tiny_cross_encoder), device="cpu").predict(
        [(query, d) for d in docs], batch_size=2
    )
    torch.testing.assert_close(torch.tensor(scores), torch.tensor(want), atol=1e-4, rtol=0)
    assert all(0 < s < 1 for s in scores) and len(counts) == 4
    with pytest.raises(InvalidParameterError, match="rerank model"):
        ranker.embed(["x"])
    long_doc = " ".join(["word"] * 200)
    with pytest.raises(ContextLengthError, match="query and document"):
        ranker.rerank(query, [long_doc])
    assert len(ranker.rerank(query, [long_doc], truncate=True)[0]) == 1


def test_llm_embed_rerank_and_refusals(
    all_minilm_folder: Path, tiny_cross_encoder: Path, hearth_home: Path
) -> None:
    llm = LLM(all_minilm_folder, license_use=None)
    (vector,) = llm.embed("hello world")
    assert len(vector) == 384
    with pytest.raises(UserInputError, match=r"does not generate text; use it for embeddings"):
        llm.generate("hi")
    with pytest.raises(UserInputError, match="needs a rerank"):
        llm.rerank("q", ["d"])
    ranker = LLM(tiny_cross_encoder, license_use=None)
    assert len(ranker.rerank("q", ["a", "b"])) == 2
    with pytest.raises(UserInputError, match=r"does not generate text; use it for reranking"):
        ranker.chat([{"role": "user", "content": "hi"}])
