"""The `tokenizer.ggml.pre` table: every entry builds, and the families split text the way
their original tokenizers do (digits, contractions, whitespace runs)."""

from __future__ import annotations

import pytest

from hearth.tokenizer.gguf_vocab import byte_alphabet
from hearth.tokenizer.pretokenizers import _PRE_NAMES, bpe_split_for

_BYTES = {ch: b for b, ch in byte_alphabet().items()}


def _pieces(pre: str, text: str) -> list[str]:
    """The pieces `pre` cuts `text` into, back in plain text (ByteLevel spells them in GPT-2's
    byte alphabet)."""
    split = bpe_split_for(pre).pre_tokenizer()
    return [bytes(_BYTES[ch] for ch in p).decode("utf-8") for p, _ in split.pre_tokenize_str(text)]


@pytest.mark.parametrize("pre", sorted(_PRE_NAMES))
def test_every_entry_builds_and_keeps_the_text(pre: str) -> None:
    text = "Hello, World! It's 2024-01-31: 12345 apples.\n\n  def f(x):\treturn x  # 日本語 😀"
    pieces = _pieces(pre, text)
    assert len(pieces) > 5 and "".join(pieces) == text


def test_family_rules() -> None:
    # SmolLM / StarCoder: digits one by one, whitespace before a digit stays its own piece
    assert _pieces("smollm", "x  12") == ["x", "  ", "1", "2"]
    # GPT-2: digits in runs, with a leading space
    assert _pieces("gpt-2", "x  12") == ["x", " ", " 12"]
    # Llama 3: digits in groups of three; case-insensitive contractions
    assert _pieces("llama-bpe", "12345 IT'S") == ["123", "45", " IT", "'S"]
    assert bpe_split_for("llama-bpe").ignore_merges
    # Qwen2: digits one by one
    assert _pieces("qwen2", "a 2024") == ["a", " ", "2", "0", "2", "4"]
    assert not bpe_split_for("qwen2").ignore_merges
    # DeepSeek LLM: letters with their space, CJK and digits apart ("\u03a9\u03bc" is Greek)
    assert _pieces("deepseek-llm", "Hi \u03a9\u03bc\u4e16\u754c12") == [
        "Hi",
        " \u03a9\u03bc",
        "\u4e16\u754c",
        "12",
    ]


def test_unknown_names_fall_back_to_llama_cpp_default() -> None:
    split = bpe_split_for("some-future-model")
    assert not split.known and split.regexes == bpe_split_for("default").regexes
    assert bpe_split_for(None).name == "default" and bpe_split_for("").known
    assert bpe_split_for("SMOLLM").known  # names are matched case-insensitively
