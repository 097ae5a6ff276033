"""build_model: HF-named tensors in, Decoder out; bad checkpoints fail naming the tensor."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from hearth.errors import CorruptModelError, UnsupportedModelError
from hearth.model.build import build_model
from hearth.weights.families import config_from_hf

RAW: dict[str, Any] = {
    "model_type": "llama",
    "vocab_size": 32,
    "hidden_size": 16,
    "intermediate_size": 24,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "tie_word_embeddings": True,
}


def _tensors() -> dict[str, torch.Tensor]:
    p = "model.layers.0."
    shapes = {
        "model.embed_tokens.weight": (32, 16),
        "model.norm.weight": (16,),
        p + "input_layernorm.weight": (16,),
        p + "post_attention_layernorm.weight": (16,),
        p + "self_attn.q_proj.weight": (16, 16),
        p + "self_attn.k_proj.weight": (8, 16),
        p + "self_attn.v_proj.weight": (8, 16),
        p + "self_attn.o_proj.weight": (16, 16),
        p + "mlp.gate_proj.weight": (24, 16),
        p + "mlp.up_proj.weight": (24, 16),
        p + "mlp.down_proj.weight": (16, 24),
    }
    return {name: torch.randn(shape, dtype=torch.bfloat16) for name, shape in shapes.items()}


def test_builds_tied_model_in_requested_dtype() -> None:
    tensors = _tensors()
    model = build_model(config_from_hf(RAW), tensors, dtype=torch.float32)
    assert model.lm_head is None  # tied: logits use the embedding matrix
    weight = model.model.embed_tokens.weight
    assert weight.dtype == torch.float32
    assert torch.equal(weight, tensors["model.embed_tokens.weight"].float())
    hidden = torch.randn(3, 16)
    assert torch.allclose(model.compute_logits(hidden), hidden @ weight.t())


def test_missing_tensor_is_named() -> None:
    tensors = _tensors()
    del tensors["model.layers.0.self_attn.k_proj.weight"]
    with pytest.raises(CorruptModelError, match=r"model\.layers\.0\.self_attn\.k_proj\.weight"):
        build_model(config_from_hf(RAW), tensors)


def test_untied_model_needs_lm_head() -> None:
    with pytest.raises(CorruptModelError, match=r"lm_head\.weight"):
        build_model(config_from_hf({**RAW, "tie_word_embeddings": False}), _tensors())


def test_mismatched_shape_is_named() -> None:
    tensors = _tensors()
    tensors["model.layers.0.mlp.up_proj.weight"] = torch.zeros(23, 16)
    with pytest.raises(CorruptModelError, match=r"mlp\.up_proj\.weight has shape \(23, 16\)"):
        build_model(config_from_hf(RAW), tensors)


def test_tensor_the_config_does_not_explain_is_named() -> None:
    tensors = _tensors()
    tensors["model.layers.0.self_attn.q_proj.bias"] = torch.zeros(16)  # config says no bias
    with pytest.raises(UnsupportedModelError, match=r"q_proj\.bias"):
        build_model(config_from_hf(RAW), tensors)


def test_fused_phi3_tensors_are_split() -> None:
    raw = {**RAW, "model_type": "phi3"}
    tensors = _tensors()
    p = "model.layers.0."
    q, k, v = (tensors.pop(p + f"self_attn.{n}_proj.weight") for n in "qkv")
    gate, up = tensors.pop(p + "mlp.gate_proj.weight"), tensors.pop(p + "mlp.up_proj.weight")
    tensors[p + "self_attn.qkv_proj.weight"] = torch.cat([q, k, v])
    tensors[p + "mlp.gate_up_proj.weight"] = torch.cat([gate, up])
    model = build_model(config_from_hf(raw), tensors)
    layer = model.model.layers[0]
    assert torch.equal(layer.self_attn.k_proj.weight, k.float())
    assert torch.equal(layer.mlp.up_proj.weight, up.float())
