"""Fixtures for the eval harness tests: the evaluation data fixtures (tests/eval/fixtures, a
few items per task), a tiny random model with its tokenizer, and an OpenAI-compatible test
server around it on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eval_tiny_lm import DATA, HFReferenceLM, TinyTokenizer, make_completions_app, serve, tiny_model


@pytest.fixture(scope="session")
def eval_data() -> Path:
    return DATA


@pytest.fixture(scope="session")
def tiny_tokenizer(eval_data: Path) -> TinyTokenizer:
    return TinyTokenizer()


@pytest.fixture(scope="session")
def tiny_hf_model(tiny_tokenizer: TinyTokenizer) -> Any:
    return tiny_model(tiny_tokenizer.vocab_size)


@pytest.fixture(scope="session")
def reference_lm(tiny_hf_model: Any, tiny_tokenizer: TinyTokenizer) -> HFReferenceLM:
    return HFReferenceLM(tiny_hf_model, tiny_tokenizer)


@pytest.fixture(scope="session")
def completions_server(tiny_hf_model: Any, tiny_tokenizer: TinyTokenizer) -> Iterator[tuple[str, Any]]:
    """(base URL, app) of a /v1/completions server on the tiny model."""
    app = make_completions_app(tiny_hf_model, tiny_tokenizer)
    with serve(app) as url:
        yield url, app
