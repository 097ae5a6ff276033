"""Engine fixtures: hearth's SmolLM2 tokenizer, a tiny random llama (transformers builds
and initialises it; hearth's decoder loads its tensors) and engines over it that check,
after every test, that every KV block is back in the pool."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from hearth.engine.engine_config import EngineConfig
from hearth.engine.llm import build_engine
from hearth.engine.llm_engine import LLMEngine

TINY_VOCAB = 49152  # SmolLM2's, so its real tokenizer detokenizes the tiny model's ids


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_gguf: Path) -> Any:
    from hearth.tokenizer.loading import load_tokenizer

    return load_tokenizer(smollm2_gguf)


@pytest.fixture(scope="session")
def tiny_llama() -> tuple[Any, Any]:
    """(hearth ModelConfig, transformers LlamaForCausalLM) with the same random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from hearth.weights.families import config_from_hf

    hf_config = LlamaConfig(
        vocab_size=TINY_VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.2,  # peaked logits: greedy paths that differ between prompts
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    hf_model = LlamaForCausalLM(hf_config).eval()
    return config_from_hf(hf_config.to_dict()), hf_model


@pytest.fixture
def make_engine(
    tiny_llama: tuple[Any, Any], smollm2_tokenizer: Any
) -> Iterator[Callable[..., LLMEngine]]:
    """make_engine(**EngineConfig fields) -> an LLMEngine over the tiny llama. After the
    test: no request left, every block free."""
    from hearth.model.build import build_model

    config, hf_model = tiny_llama
    made: list[LLMEngine] = []
    # a tiny model gains nothing from threads, and on a shared CPU OpenMP's spinning
    # threads make it many times slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def make(**kwargs: Any) -> LLMEngine:
        kwargs.setdefault("kv_cache_gb", 0.01)
        tensors = {k: v.detach().clone() for k, v in hf_model.state_dict().items()}
        model = build_model(config, tensors, torch.float32)
        engine = build_engine(
            config, model, smollm2_tokenizer, EngineConfig(**kwargs), torch.float32
        )
        made.append(engine)
        return engine

    yield make
    torch.set_num_threads(threads)
    for engine in made:
        engine.shutdown()
        bm = engine.block_manager
        assert not engine.requests, f"requests left in the engine: {list(engine.requests)}"
        assert bm.num_free_blocks == bm.num_blocks, "KV blocks leaked"
        assert all(b.ref_count == 0 for b in bm.blocks)
