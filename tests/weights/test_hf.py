"""HF folders: config.json, sharded safetensors via the index, generation defaults, lazy
dtype conversion, and clear errors for incomplete folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hearth.errors import CorruptModelError, UnsupportedModelError
from hearth.weights.hf import SafetensorsTensors, read_generation_defaults
from hearth.weights.loader import load_weights

CONFIG = {
    "model_type": "qwen3",
    "vocab_size": 16,
    "hidden_size": 8,
    "intermediate_size": 12,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 4,
    "torch_dtype": "bfloat16",
}


def _sharded(folder: Path) -> dict[str, torch.Tensor]:
    folder.mkdir()
    a = {"model.embed_tokens.weight": torch.randn(16, 8, dtype=torch.bfloat16)}
    b = {"model.norm.weight": torch.randn(8, dtype=torch.bfloat16), "step": torch.tensor([3])}
    save_file(a, str(folder / "model-00001-of-00002.safetensors"))
    save_file(b, str(folder / "model-00002-of-00002.safetensors"))
    weight_map = {name: "model-00001-of-00002.safetensors" for name in a}
    weight_map |= {name: "model-00002-of-00002.safetensors" for name in b}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(CONFIG))
    gen = {"temperature": 0.6, "top_p": 0.95, "eos_token_id": [1, 2], "transformers_version": "x"}
    (folder / "generation_config.json").write_text(json.dumps(gen))
    return a | b


def test_sharded_folder_loads_lazily_in_requested_dtype(tmp_path: Path) -> None:
    saved = _sharded(tmp_path / "m")
    loaded = load_weights(tmp_path / "m", dtype=torch.float32)
    assert loaded.config.architecture == "qwen3" and loaded.config.qk_norm
    assert loaded.generation_defaults == {"temperature": 0.6, "top_p": 0.95, "eos_token_id": [1, 2]}
    tensors = loaded.tensors
    assert set(tensors) == set(saved) and len(tensors) == 3
    assert isinstance(tensors, SafetensorsTensors)
    assert tensors.shape("model.embed_tokens.weight") == (16, 8)
    norm = tensors["model.norm.weight"]
    assert norm.dtype == torch.float32 and torch.equal(norm, saved["model.norm.weight"].float())
    assert tensors["step"].dtype == torch.int64  # integer tensors keep their dtype


def test_missing_shard_is_named(tmp_path: Path) -> None:
    _sharded(tmp_path / "m")
    (tmp_path / "m" / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CorruptModelError, match=r"model-00002-of-00002\.safetensors"):
        load_weights(tmp_path / "m")


def test_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match="does not exist"):
        load_weights(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnsupportedModelError, match="neither"):
        load_weights(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text(json.dumps(CONFIG))
    with pytest.raises(UnsupportedModelError, match=r"no \*\.safetensors"):
        load_weights(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text("{not json")
    with pytest.raises(CorruptModelError, match=r"config\.json"):
        load_weights(tmp_path / "empty")
    assert read_generation_defaults(tmp_path / "empty") == {}


def test_single_file_folder_from_save_pretrained(tmp_path: Path) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    save_file({"x": torch.ones(2)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(CONFIG))
    assert list(load_weights(folder).tensors) == ["x"]
