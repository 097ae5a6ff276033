"""Store test fixtures: a Store on an empty HEARTH_HOME, a tiny HF model folder made here
(config.json + sharded safetensors + tokenizer config + card)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from hearth.config import load_settings
from hearth.store import Store


@pytest.fixture
def store(hearth_home: Path) -> Store:
    return Store(load_settings())


def make_tiny_hf(folder: Path, sharded: bool = True) -> Path:
    """A 2-layer-ish llama-shaped checkpoint: real safetensors (numpy, so no torch import), a few KB."""
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 8,
        "num_hidden_layers": 1,
        "max_position_embeddings": 256,
        "vocab_size": 16,
        "torch_dtype": "float16",
    }
    (folder / "config.json").write_text(json.dumps(config))
    rng = np.random.default_rng(0)
    a = {"model.embed_tokens.weight": rng.standard_normal((16, 8)).astype(np.float16)}
    b = {"model.layers.0.mlp.up_proj.weight": rng.standard_normal((12, 8)).astype(np.float16)}
    if sharded:
        save_file(a, str(folder / "model-00001-of-00002.safetensors"))
        save_file(b, str(folder / "model-00002-of-00002.safetensors"))
        weight_map = {k: "model-00001-of-00002.safetensors" for k in a}
        weight_map |= {k: "model-00002-of-00002.safetensors" for k in b}
        index = {"metadata": {}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    else:
        save_file(a | b, str(folder / "model.safetensors"))
    tok_config = {"chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config))
    (folder / "README.md").write_text("---\nlicense: mit\ntags:\n- tiny\n---\n# tiny\n")
    return folder


@pytest.fixture
def tiny_hf(tmp_path: Path) -> Path:
    return make_tiny_hf(tmp_path / "tiny-llama")


@pytest.fixture
def tiny_hf_factory() -> Callable[..., Path]:
    return make_tiny_hf
