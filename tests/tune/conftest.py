"""Fixtures for the tuning tests: SmolLM2's tokenizer (real chat template), loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.tokenizer import Tokenizer, load_tokenizer


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_gguf: Path) -> Tokenizer:
    return load_tokenizer(smollm2_gguf)
