"""`hearth.weights.gguf_adapter`: llama.cpp's GGUF LoRA read as per-module (A, B, scaling) in HF
naming. Half-precision tensors (llama.cpp's converter writes f16/bf16/q8_0 on request) are
read; the scale is llama.cpp's alpha / r with r from the tensor, 1 without alpha; q/k rows of
B are un-permuted for llama files only; a folder holding one .gguf (a store model made with a
GGUF ADAPTER) is that file."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from hearth.errors import CorruptModelError, UserInputError
from hearth.tune.gguf_lora import llama_permute
from hearth.weights.families import config_from_hf
from hearth.weights.gguf_adapter import gguf_adapter_file, gguf_architecture, read_gguf_adapter

LLAMA = config_from_hf(
    {
        "model_type": "llama", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
    }
)  # fmt: skip


def _write(path: Path, arch: str, tensors: dict[str, np.ndarray], alpha: float | None) -> Path:
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    if alpha is not None:
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for name, value in tensors.items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_names_layout_scale_and_half_precision(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    a, q_b = torch.randn(8, 32, generator=g), torch.randn(32, 8, generator=g)
    up_b = torch.randn(64, 8, generator=g)
    path = _write(tmp_path / "x.gguf", "llama", {
        "blk.0.attn_q.weight.lora_a": a.numpy(),
        "blk.0.attn_q.weight.lora_b": llama_permute(q_b, 4).numpy(),
        "blk.0.ffn_up.weight.lora_a": a.half().numpy(),
        "blk.0.ffn_up.weight.lora_b": up_b.half().numpy(),
    }, alpha=16.0)  # fmt: skip
    adapter = read_gguf_adapter(path, LLAMA)
    q = adapter.modules["model.layers.0.self_attn.q_proj"]
    up = adapter.modules["model.layers.0.mlp.up_proj"]
    torch.testing.assert_close(q.b, q_b)  # back in HF row order
    torch.testing.assert_close(q.a, a)
    torch.testing.assert_close(up.b, up_b.half().float())
    assert q.scaling == up.scaling == 2.0  # alpha 16 / rank 8
    assert adapter.targets == ("q_proj", "up_proj")
    assert adapter.base_digest is None and len(adapter.digest) == 64

    no_alpha = _write(tmp_path / "y.gguf", "llama", {
        "blk.0.attn_v.weight.lora_a": a.numpy(), "blk.0.attn_v.weight.lora_b": q_b[:16].numpy(),
    }, alpha=None)  # fmt: skip
    assert read_gguf_adapter(no_alpha, LLAMA).modules["model.layers.0.self_attn.v_proj"].scaling == 1


def test_inconsistent_files_are_refused(tmp_path: Path) -> None:
    odd = _write(tmp_path / "odd.gguf", "llama", {
        "blk.0.attn_v.weight.lora_a": np.ones((8, 32), np.float32),
        "blk.0.attn_v.weight.lora_b": np.ones((16, 4), np.float32),
    }, alpha=8.0)  # fmt: skip
    with pytest.raises(CorruptModelError, match=r"lora_a .* and lora_b .* of one rank"):
        read_gguf_adapter(odd, LLAMA)
    norm = _write(tmp_path / "norm.gguf", "llama", {
        "blk.0.attn_norm.weight": np.ones(32, np.float32),
    }, alpha=8.0)  # fmt: skip
    with pytest.raises(UserInputError, match=r"attn_norm\.weight is not a LoRA A/B"):
        read_gguf_adapter(norm, LLAMA)


def test_a_folder_with_one_gguf_is_that_file(tmp_path: Path) -> None:
    assert gguf_adapter_file(tmp_path) is None  # read as a (missing) PEFT folder
    with pytest.raises(UserInputError, match=r"no GGUF file at .*gone\.gguf; check the path"):
        read_gguf_adapter(gguf_adapter_file(tmp_path / "gone.gguf") or tmp_path, LLAMA)
    (tmp_path / "a.gguf").write_bytes(b"")
    assert gguf_adapter_file(tmp_path) == tmp_path / "a.gguf"
    assert gguf_adapter_file(tmp_path / "a.gguf") == tmp_path / "a.gguf"
    (tmp_path / "b.gguf").write_bytes(b"")
    with pytest.raises(UserInputError, match=r"holds 2 \.gguf files"):
        gguf_adapter_file(tmp_path)
    (tmp_path / "adapter_config.json").write_text("{}")
    assert gguf_adapter_file(tmp_path) is None  # a PEFT folder wins


def test_architectures_follow_llama_cpp() -> None:
    assert gguf_architecture("mistral") == gguf_architecture("mixtral") == "llama"
    assert gguf_architecture("gemma3_text") == "gemma3"
    assert gguf_architecture("qwen2_moe") == "qwen2moe"
    assert gguf_architecture("bert") is None
