"""Fixtures for the tokenizer tests: hearth's tokenizers for the two real GGUF files (built
once per session) and a generated corpus of strings that stress tokenizers."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from hearth.tokenizer import Tokenizer, load_tokenizer, tokenizer_from_gguf_metadata

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "It was the best of times, it was the worst of times.",
    "I'm sure they'll say it's fine, but we've seen what you'd do.",
    "Dr. Smith's lab (est. 1999) published 3 papers in Nature & Science.",
    "Hello world",
    "What is the capital of France?",
    "The capital of France is Paris.",
    "ALL CAPS SENTENCE WITH NUMBERS LIKE 12345 AND SYMBOLS!!!",
    "mixedCase camelCase snake_case kebab-case PascalCase",
    "She said: “don’t go” — and then… silence.",
    "e-mail me at someone@example.com or visit https://example.org/a?b=c&d=e#frag",
]
CODE = [
    "def add(a, b):\n    return a + b\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
    'const x = {"key": [1, 2, 3], "nested": {"a": null}};',
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    '<div class="box"><p>Hi &amp; bye</p></div>',
    'if x != y and not z:\n        raise ValueError(f"bad {x!r}")',
    '#include <stdio.h>\nint main(void) { printf("%d\\n", 42); }',
    "    # indented comment\n\n\n    pass",
    "λx. x + 1  // lambda\n",
    "git commit -m 'fix: handle \\t tabs' && echo $?",
]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵", "❤️", "🤖", "🎉🎉🎉", "🙂 ok", "☕️"]
CJK = [
    "日本語のテキスト",
    "中文分词测试",
    "한국어 문장입니다",
    "漢字かなカナ",
    "東京タワー",
    "你好，世界！",
]
ACCENTS = [
    "café",
    "naïve",
    "Ångström",
    "São Paulo",
    "crème brûlée",
    "Zürich",
    "façade",
    "Dvořák",
    "Łódź",
    "ñandú",
]
OTHER_SCRIPTS = [
    "Привет, мир",
    "Γειά σου Κόσμε",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "שלום עולם",
    "∑∫√∞ ≤ ≥ ≠",
    "½ ² ³ ٣ ①",
]
WHITESPACE = [
    " ",
    "  ",
    "   ",
    "\n",
    "\n\n",
    "\n\n\n",
    "\t",
    "\t\t",
    " \n ",
    "\r\n",
    "    ",
    "        ",
    " \t \n",
]
LOOKALIKES = [
    "<|im_end",
    "<|im_end|>",
    "<|im_start|>",
    "im_end|>",
    "< |im_end| >",
    "<start_of_turn>",
    "<start_of_turn",
    "<end_of_turn>",
    "<bos>",
    "<eos>",
    "<|endoftext|>",
    "<pad>",
    "[multimodal]",
    "<0x0A>",
    "▁",
    "<unused0>",
]
NUMBERS = [
    "0",
    "42",
    "3.14159",
    "1,000,000",
    "2024-01-31",
    "-17",
    "1e-9",
    "0x1F",
    "007",
    "x  1",
    "a1b2c3",
    " 12 345",
]
FRAGMENTS = [PROSE, CODE, EMOJI, CJK, ACCENTS, OTHER_SCRIPTS, WHITESPACE, LOOKALIKES, NUMBERS]
SEPARATORS = ["", " ", "  ", "\n", "\n\n", "\t", " \n"]


def make_corpus(n_random: int = 1300, seed: int = 1234) -> list[str]:
    """Every fragment alone, some fixed edge cases, then `n_random` random mixtures."""
    rng = random.Random(seed)
    corpus = [frag for group in FRAGMENTS for frag in group]
    corpus += ["", " leading", "trailing ", "  both  ", "a" * 200, "ab " * 50, " " * 17, "\n" * 9]
    for _ in range(n_random):
        parts = []
        for _ in range(rng.randint(1, 6)):
            parts.append(rng.choice(rng.choice(FRAGMENTS)))
            parts.append(rng.choice(SEPARATORS))
        text = "".join(parts)
        if rng.random() < 0.2:  # cut mid-fragment sometimes, to get ragged starts and ends
            a, b = sorted(rng.sample(range(len(text) + 1), 2))
            text = text[a:b] or text
        corpus.append(text)
    return corpus


# pieces of a toy SentencePiece vocabulary ("▁" is SentencePiece's space)
_PIECES_TEXT = (
    "▁ e h l o P a r i s t c p ▁t he ▁the ▁P ar is ▁Par ▁Paris ▁is ll ▁he ▁hell ▁hello lo ▁a "
    "▁cap it al ▁capital ▁c ca ap ta ▁i"
)
PIECES = _PIECES_TEXT.split()


def synthetic_spm_metadata() -> dict:  # type: ignore[type-arg]
    """A small Llama-2-style SentencePiece vocabulary as GGUF metadata: unk/bos/eos, 256 byte
    tokens, then pieces with scores (the longer, the better) and no merges."""
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *PIECES]
    types = [2, 3, 3, *([6] * 256), *([1] * len(PIECES))]
    piece_scores = [-100.0 + 10 * len(p) - i * 0.01 for i, p in enumerate(PIECES)]
    scores = [0.0] * (3 + 256) + piece_scores
    return {
        "general.architecture": "llama",
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
    }


@pytest.fixture
def spm_metadata() -> dict:  # type: ignore[type-arg]
    return synthetic_spm_metadata()


@pytest.fixture(scope="session")
def spm_tokenizer() -> Tokenizer:
    """A tiny SentencePiece tokenizer (prefix space, byte fallback) rebuilt from metadata."""
    return tokenizer_from_gguf_metadata(synthetic_spm_metadata())


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return make_corpus()


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_gguf: Path) -> Tokenizer:
    return load_tokenizer(smollm2_gguf)


@pytest.fixture(scope="session")
def gemma3_tokenizer(gemma3_gguf: Path) -> Tokenizer:
    return load_tokenizer(gemma3_gguf)
