"""The identity-leak filter: a battle whose answers name a model (FastChat's identity words,
`clean_battle_data.py`, plus the battling models' own names) was not blind, so it is kept
but not rated. "I am SmolLM, made by Hugging Face" in either answer unmasks the pair."""

from __future__ import annotations

import re
from collections.abc import Iterable

# FastChat's list (vendors and model families of its arena), plus the families and makers
# of the open-weight models hearth runs; matched case-insensitively as substrings, as there
IDENTITY_WORDS = (
    "vicuna", "lmsys", "koala", "uc berkeley", "open assistant", "laion", "chatglm",
    "chatgpt", "gpt-4", "openai", "anthropic", "claude", "bard", "palm", "lamda", "google",
    "llama", "qianwan", "alibaba", "mistral", "zhipu", "keg lab", "01.ai", "ai2", "tülu",
    # hearth's families
    "smollm", "hugging face", "huggingface", "gemma", "deepmind", "qwen", "phi-3", "phi-4",
    "microsoft", "deepseek", "meta ai", "olmo",
)  # fmt: skip

# parts of a model name that say nothing about its identity
_GENERIC = {"instruct", "chat", "base", "latest", "gguf", "model", "it"}


def name_words(model: str) -> set[str]:
    """Identity words from a model's name: "smollm2:135m-q4" gives "smollm2" and
    "smollm"; sizes and quant tags ("135m", "q4") are left out."""
    words: set[str] = set()
    for part in re.split(r"[:/_\-.\s]+", model.lower()):
        if part in _GENERIC or not re.search(r"[a-z]{3}", part):
            continue
        if re.fullmatch(r"q\d.*|f16|f32|bf16|int\d|\d+[mbk]", part):
            continue
        words.add(part)
        letters = re.match(r"[a-z]+", part)  # "smollm2" -> "smollm", "gemma3" -> "gemma"
        if letters and len(letters.group()) >= 4:
            words.add(letters.group())
    return words


def find_leak(texts: Iterable[str], models: Iterable[str]) -> str | None:
    """The first identity word found in the answers, or None when they are blind."""
    blob = "\n".join(texts).lower()
    words = set(IDENTITY_WORDS)
    for m in models:
        words |= name_words(m)
    for word in sorted(words):
        if word in blob:
            return word
    return None
