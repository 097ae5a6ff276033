"""Fixtures for the tuning tests: SmolLM2's tokenizer (real chat template), loaded once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from hearth.model.build import build_model
from hearth.tokenizer import Tokenizer, load_tokenizer
from hearth.weights.loader import load_weights


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_gguf: Path) -> Tokenizer:
    return load_tokenizer(smollm2_gguf)


def make_tiny_pair(
    folder: Path, model_type: str, seed: int = 0, **overrides: Any
) -> tuple[Any, Any]:
    """(a random transformers model of this family saved to `folder`, hearth's Decoder
    loaded from it), both float32."""
    from transformers import AutoConfig, AutoModelForCausalLM

    fields: dict[str, Any] = dict(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    fields.update(overrides)
    config = AutoConfig.for_model(model_type, **fields)
    torch.manual_seed(seed)
    hf = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    with torch.no_grad():  # random norms and biases too: the defaults (1, 0) hide bugs
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.normal_(0.0 if model_type.startswith("gemma") else 1.0, 0.2)
            else:
                p.normal_(0.0, 0.12)
    hf.save_pretrained(folder)
    loaded = load_weights(folder)
    return hf, build_model(loaded.config, loaded.tensors)


TinyPair = Callable[..., tuple[Any, Any]]


@pytest.fixture
def tiny_pair(tmp_path: Path) -> TinyPair:
    """tiny_pair(model_type, seed=0, **config overrides) -> (transformers model, hearth Decoder)."""
    return lambda model_type, seed=0, **overrides: make_tiny_pair(
        tmp_path / f"{model_type}-{seed}", model_type, seed, **overrides
    )
