"""The embedding families users run beside a chat model, each built tiny and random with
sentence-transformers itself (the reference) and saved as the folder it would publish:
bge (BERT, CLS pooling, Normalize), e5-multilingual (XLM-RoBERTa with a SentencePiece-style
Unigram tokenizer, mean pooling, Normalize) and a model whose
`config_sentence_transformers.json` names a default prompt (as Qwen3-Embedding and the
instruction-tuned bge/e5 releases do). hearth's vectors must equal `SentenceTransformer.encode`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from hearth.engine.embedder import Embedder

TEXTS = [
    "",
    "what is the capital of france?",
    "Paris is the capital and largest city of France.",
    "a heron waited at the river bank while the city slept " * 6,
    "emoji 🙂 and ünïcödé",
]
TINY: dict[str, Any] = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=130,
)


def _randomize(model: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))


def _save_st(
    encoder_dir: Path, pooling: str, folder: Path, prompts: dict[str, str] | None = None
) -> Path:
    from sentence_transformers import SentenceTransformer, models

    word = models.Transformer(str(encoder_dir), max_seq_length=96)
    pool = models.Pooling(word.get_word_embedding_dimension(), pooling_mode=pooling)
    kwargs: dict[str, Any] = {}
    if prompts:
        kwargs = {"prompts": prompts, "default_prompt_name": next(iter(prompts))}
    st = SentenceTransformer(modules=[word, pool, models.Normalize()], device="cpu", **kwargs)
    st.save(str(folder))
    return folder


def _bge(tmp: Path, minilm: Path) -> Path:
    import transformers

    raw = tmp / "bert"
    model = transformers.BertModel(
        transformers.BertConfig(vocab_size=30522, **TINY), add_pooling_layer=False
    ).eval()
    _randomize(model)
    model.save_pretrained(raw)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (minilm / name).exists():
            shutil.copy(minilm / name, raw / name)
    return raw


def _unigram_tokenizer(folder: Path) -> int:
    """An XLM-R-style tokenizer (Metaspace pre-tokenizer, Unigram model, <s> ... </s>) trained
    on a few sentences; returns its vocabulary size."""
    import transformers
    from tokenizers import SentencePieceUnigramTokenizer

    corpus = [t for t in TEXTS if t] * 20 + ["the quick brown fox jumps over the lazy dog"] * 20
    tok = SentencePieceUnigramTokenizer()
    tok.train_from_iterator(
        corpus, vocab_size=120, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        unk_token="<unk>",
    )
    fast = transformers.XLMRobertaTokenizerFast(tokenizer_object=tok)
    fast.save_pretrained(folder)
    return len(fast)


def _e5(tmp: Path) -> Path:
    import transformers

    raw = tmp / "xlmr"
    raw.mkdir()
    vocab = _unigram_tokenizer(raw)
    config = transformers.XLMRobertaConfig(vocab_size=vocab, pad_token_id=1, **TINY)
    model = transformers.XLMRobertaModel(config, add_pooling_layer=False).eval()
    _randomize(model)
    model.save_pretrained(raw)
    return raw


def _check(folder: Path, texts: list[str]) -> Embedder:
    from sentence_transformers import SentenceTransformer

    want = SentenceTransformer(str(folder), device="cpu").encode(texts, convert_to_tensor=True)
    embedder = Embedder.load(folder)
    got, _ = embedder.embed(texts, truncate=True)
    cosine = torch.nn.functional.cosine_similarity(got, want)
    assert cosine.min().item() >= 0.9999, (cosine.argmin().item(), cosine.min().item())
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    return embedder


def test_bge_cls_pooling_and_normalize(all_minilm_folder: Path, tmp_path: Path) -> None:
    folder = _save_st(_bge(tmp_path, all_minilm_folder), "cls", tmp_path / "bge")
    embedder = _check(folder, TEXTS)
    assert embedder.spec.pooling.mode == "cls" and embedder.spec.pooling.normalize


def test_e5_xlm_roberta_unigram_mean_pooling(tmp_path: Path) -> None:
    folder = _save_st(_e5(tmp_path), "mean", tmp_path / "e5")
    embedder = _check(folder, TEXTS)
    assert embedder.spec.model_type == "xlm-roberta"
    assert embedder.network.config.position_offset == 2


@pytest.mark.parametrize("family", ["bge", "e5"])
def test_default_prompt_is_prepended(
    family: str, all_minilm_folder: Path, tmp_path: Path
) -> None:
    raw = _bge(tmp_path, all_minilm_folder) if family == "bge" else _e5(tmp_path)
    prompts = {"query": "query: ", "passage": "passage: "}
    folder = _save_st(raw, "mean", tmp_path / f"{family}-prompted", prompts)
    embedder = _check(folder, TEXTS)
    assert embedder.spec.default_prompt == "query: "
