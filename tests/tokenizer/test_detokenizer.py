"""Streaming detokenization: deltas concatenate to decode(ids), never show half a character,
keep SentencePiece's leading spaces in context, and skip special tokens like decode does."""

from __future__ import annotations

import pytest

from hearth.tokenizer import IncrementalDetokenizer, Tokenizer


def _stream(tok: Tokenizer, ids: list[int], **kwargs) -> list[str]:  # type: ignore[no-untyped-def]
    detok = IncrementalDetokenizer(tok, **kwargs)
    deltas = [detok.add(i) for i in ids]
    deltas.append(detok.finish())
    return deltas


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_deltas_concatenate_to_decode(
    model: str, request: pytest.FixtureRequest, corpus: list[str]
) -> None:
    tok: Tokenizer = request.getfixturevalue(f"{model}_tokenizer")
    for text in corpus[:400]:
        ids = tok.encode(text, add_special_tokens=False)
        deltas = _stream(tok, ids)
        assert "".join(deltas) == tok.decode(ids), text
        # valid text never shows a replacement character mid-stream
        assert not any("\ufffd" in d for d in deltas), (text, deltas)
        assert deltas[-1] == ""  # nothing was left held back at the end


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_multibyte_characters_wait_for_their_last_byte(
    model: str, request: pytest.FixtureRequest
) -> None:
    tok: Tokenizer = request.getfixturevalue(f"{model}_tokenizer")
    text = "a 𝠀𓀀 b"  # rare characters: spelled byte by byte in both vocabularies
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    broken = [i for i in ids if "\ufffd" in tok.decode([i])]
    assert len(broken) >= 6  # decoded alone, the byte tokens show U+FFFD
    deltas = _stream(tok, ids)
    assert "".join(deltas) == text and not any("\ufffd" in d for d in deltas)
    # while a character is incomplete nothing is emitted (each of the two characters is held
    # back for all but its last byte token)
    assert deltas.count("") >= len(broken) - 2


def test_sentencepiece_leading_space_kept_in_context(spm_tokenizer: Tokenizer) -> None:
    tok = spm_tokenizer
    prompt = tok.encode("the capital is")
    paris = tok.encode("Paris", add_special_tokens=False)
    assert tok.id_to_token(paris[0]) == "▁Paris" and tok.decode(paris) == "Paris"
    # after a prompt the word keeps its space...
    assert "".join(_stream(tok, paris, prompt_ids=prompt)) == " Paris"
    # ...and at the very start it is dropped, exactly as decode() of the whole output does
    ids = tok.encode("hello the Paris", add_special_tokens=False)
    deltas = _stream(tok, ids)
    assert deltas[0] == "hello" and "".join(deltas) == "hello the Paris" == tok.decode(ids)


def test_special_tokens_are_skipped_or_kept(smollm2_tokenizer: Tokenizer) -> None:
    tok = smollm2_tokenizer
    ids = tok.encode("Paris.<|im_end|>", add_special_tokens=False)
    assert ids[-1] == tok.token_to_id("<|im_end|>")
    assert "".join(_stream(tok, ids)) == "Paris."
    assert "".join(_stream(tok, ids, skip_special_tokens=False)) == "Paris.<|im_end|>"


def test_long_stream_emits_progressively(gemma3_tokenizer: Tokenizer) -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 20
    ids = gemma3_tokenizer.encode(text, add_special_tokens=False)
    detok = IncrementalDetokenizer(gemma3_tokenizer)
    emitted = [detok.add(i) for i in ids]
    assert sum(1 for d in emitted if d) == len(ids)  # every word-piece shows up as it arrives
    assert detok.text == text
