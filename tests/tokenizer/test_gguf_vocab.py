"""Rebuilding GGUF vocabularies: Gemma 3's derived merges are exactly transformers' converter
output, a generic SentencePiece vocabulary (merges derived from scores, prefix space) encodes
like transformers' converter builds it, and unknown vocabulary kinds are refused by name."""

from __future__ import annotations

import json

import pytest

from hearth.errors import UnsupportedModelError
from hearth.tokenizer import Tokenizer, tokenizer_from_gguf_metadata
from hearth.tokenizer.gguf_vocab import byte_alphabet


def test_gemma3_vocab_and_merges_equal_transformers_conversion(
    gemma3_tokenizer: Tokenizer, hf_gemma3_tokenizer
) -> None:  # type: ignore[no-untyped-def]
    ours = json.loads(gemma3_tokenizer.backend.to_str())
    theirs = json.loads(hf_gemma3_tokenizer.backend_tokenizer.to_str())
    assert ours["model"]["vocab"] == theirs["model"]["vocab"]
    # 514,906 merges derived from the vocabulary, in the same order
    assert ours["model"]["merges"] == theirs["model"]["merges"]
    assert len(ours["model"]["merges"]) > 500_000
    specials = {(t["id"], t["content"], t["special"]) for t in ours["added_tokens"]}
    # the one difference on purpose: the image markers the GGUF labels user-defined are
    # special here (as in Google's own tokenizer), so decoding skips them
    markers = {"<start_of_image>", "<end_of_image>"}
    expected = {
        (t["id"], t["content"], t["special"] or t["content"] in markers)
        for t in theirs["added_tokens"]
    }
    assert specials == expected


@pytest.mark.parametrize("arch", ["llama", "phi3"])
def test_sentencepiece_vocab_encodes_like_transformers(arch: str, spm_metadata: dict) -> None:  # type: ignore[type-arg]
    """A generic SentencePiece file (merges derived from scores) and Phi-3's variant (the prefix
    space before every piece of text, also after special tokens), against transformers'
    GGUF converter given the same vocabulary."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer

    meta = spm_metadata | {"general.architecture": arch}
    ours = tokenizer_from_gguf_metadata(meta)
    reference, _ = convert_gguf_tokenizer(
        arch,
        {
            "tokenizer_type": "llama",
            "tokens": meta["tokenizer.ggml.tokens"],
            "scores": meta["tokenizer.ggml.scores"],
            "token_type": meta["tokenizer.ggml.token_type"],
        },
    )
    texts = [
        "the Paris",
        "hello",
        "the capital is Paris",
        " hello  the",
        "Pé 😀 x",
        "",
        "he\nll\to",
    ]
    texts += ["<s>hello", "hello</s>the", "a <s> b"]
    for text in texts:
        ids = ours.encode(text, add_special_tokens=False)
        assert ids == reference.encode(text, add_special_tokens=False).ids, text
        assert ours.decode(ids) == reference.decode(ids, skip_special_tokens=True)
    # SentencePiece writes a space in front of the text and the decoder removes it again
    assert ours.id_to_token(ours.encode("Paris", False)[0]) == "▁Paris"
    assert ours.decode(ours.encode("the capital is Paris")) == "the capital is Paris"
    # add_bos defaults to true for SentencePiece files, as in llama.cpp
    assert ours.encode("hello")[0] == 1
    assert ours.vocab_type == "byte_fallback" and ours.eos_ids == {2}
    # Phi-3 spells the text after a special token with a leading "▁"; Llama does not
    after_special = ours.encode("<s>hello", add_special_tokens=False)[1:]
    assert [ours.id_to_token(i) for i in after_special] == (
        ["▁hello"] if arch == "phi3" else ["he", "ll", "o"]
    )


def test_byte_alphabet_is_gpt2s() -> None:
    table = byte_alphabet()
    assert len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A"


def test_unknown_vocabulary_kind_is_refused_by_name(spm_metadata: dict) -> None:  # type: ignore[type-arg]
    meta = spm_metadata | {"tokenizer.ggml.model": "bert"}
    with pytest.raises(UnsupportedModelError, match=r"'bert'.*gpt2, llama"):
        tokenizer_from_gguf_metadata(meta)
    with pytest.raises(UnsupportedModelError, match=r"no tokenizer\.ggml\.tokens"):
        tokenizer_from_gguf_metadata({"tokenizer.ggml.model": "gpt2"})


def test_gemma3_image_markers_never_reach_text(gemma3_tokenizer: Tokenizer) -> None:
    """Gemma 3's GGUF labels `<start_of_image>` user-defined; it is a control token: skipped
    when decoding (unless asked), still one token when encoding. HTML tags stay text."""
    from hearth.tokenizer.detokenizer import IncrementalDetokenizer

    tok = gemma3_tokenizer
    (marker,) = tok.encode("<start_of_image>", add_special_tokens=False)
    (table,) = tok.encode("<table>", add_special_tokens=False)
    ids = [*tok.encode("Hello", add_special_tokens=False), marker, table]
    assert tok.decode(ids) == "Hello<table>"
    assert tok.decode(ids, skip_special_tokens=False) == "Hello<start_of_image><table>"
    detok = IncrementalDetokenizer(tok)
    assert "".join(detok.add(i) for i in ids) + detok.finish() == "Hello<table>"
