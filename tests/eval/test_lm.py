"""The tokenization rule shared by the backends (lm-eval's), and the request types."""

from __future__ import annotations

import pytest

from hearth.eval.lm import (
    GenerationRequest,
    cut_at_stops,
    encode_pair,
    move_trailing_space,
)


def chars(text: str) -> list[int]:
    return [ord(c) for c in text]


def words(text: str) -> list[int]:
    """A toy tokenizer whose tokens carry their leading space (like byte-level BPE) and
    that merges "ab" into one token: whole-string and split encodings can differ."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("ab", i):
            out.append(1000)
            i += 2
        else:
            out.append(ord(text[i]))
            i += 1
    return out


def test_trailing_space_moves_to_the_continuation() -> None:
    assert move_trailing_space("Answer: ", "Paris") == ("Answer:", " Paris")
    assert move_trailing_space("Answer:\n\n", "x") == ("Answer:", "\n\nx")
    assert move_trailing_space("Answer:", " Paris") == ("Answer:", " Paris")


def test_encode_pair_cuts_the_whole_encoding_at_the_context_length() -> None:
    ctx, cont = encode_pair(chars, "Answer: ", "Paris")
    assert ctx == chars("Answer:")
    assert cont == chars(" Paris")
    # "a" + "b" would be two tokens apart; lm-eval encodes "ab" whole and cuts after
    # len(encode("xa")) = 2 tokens, so the continuation is what is left of the whole
    ctx, cont = encode_pair(words, "xa", "bc")
    assert ctx == [ord("x"), ord("a")]
    assert cont == [ord("c")]  # whole = [x, ab, c]: cut at 2
    with pytest.raises(ValueError):
        encode_pair(chars, "", "x")


def test_cut_at_stops_and_generation_request_checks() -> None:
    assert cut_at_stops(" 42\n\nQuestion: next", ["Question:", "</s>"]) == " 42\n\n"
    assert cut_at_stops("a</s>b<|im_end|>", ["<|im_end|>", "</s>"]) == "a"
    assert GenerationRequest("c", ["x"]).until == ("x",)
    with pytest.raises(ValueError, match="max_tokens"):
        GenerationRequest("c", (), max_tokens=0)
    with pytest.raises(ValueError, match="until"):
        GenerationRequest("c", ("",))
