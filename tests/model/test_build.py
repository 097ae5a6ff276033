"""build_model: HF-named tensors in, Decoder out; bad checkpoints fail naming the tensor."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from sequence_runner import SequenceRunner
from tiny_models import backend_under_test

from hearth.errors import CorruptModelError, UnsupportedModelError
from hearth.model.build import build_model, fuse_projections
from hearth.model.layers.linear import Linear
from hearth.weights.families import config_from_hf

OPS = backend_under_test()

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
    model = build_model(config_from_hf(RAW), tensors, dtype=torch.float32, backend=OPS)
    assert model.lm_head is None  # tied: logits use the embedding matrix
    weight = model.model.embed_tokens.weight
    assert weight.dtype == torch.float32
    assert torch.equal(weight, tensors["model.embed_tokens.weight"].float())
    hidden = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    # float32 tolerances: the few-row kernel sums in another order than torch's matmul
    torch.testing.assert_close(model.compute_logits(hidden), hidden @ weight.t())


def test_missing_tensor_is_named() -> None:
    tensors = _tensors()
    del tensors["model.layers.0.self_attn.k_proj.weight"]
    with pytest.raises(CorruptModelError, match=r"model\.layers\.0\.self_attn\.k_proj\.weight"):
        build_model(config_from_hf(RAW), tensors, backend=OPS)


def test_untied_model_needs_lm_head() -> None:
    with pytest.raises(CorruptModelError, match=r"lm_head\.weight"):
        build_model(config_from_hf({**RAW, "tie_word_embeddings": False}), _tensors())


def test_mismatched_shape_is_named() -> None:
    tensors = _tensors()
    tensors["model.layers.0.mlp.up_proj.weight"] = torch.zeros(23, 16)
    with pytest.raises(CorruptModelError, match=r"mlp\.up_proj\.weight has shape \(23, 16\)"):
        build_model(config_from_hf(RAW), tensors, backend=OPS)


def test_tensor_the_config_does_not_explain_is_named() -> None:
    tensors = _tensors()
    tensors["model.layers.0.self_attn.q_proj.bias"] = torch.zeros(16)  # config says no bias
    with pytest.raises(UnsupportedModelError, match=r"q_proj\.bias"):
        build_model(config_from_hf(RAW), tensors, backend=OPS)


def test_fused_phi3_tensors_are_split() -> None:
    raw = {**RAW, "model_type": "phi3"}
    tensors = _tensors()
    p = "model.layers.0."
    q, k, v = (tensors.pop(p + f"self_attn.{n}_proj.weight") for n in "qkv")
    gate, up = tensors.pop(p + "mlp.gate_proj.weight"), tensors.pop(p + "mlp.up_proj.weight")
    tensors[p + "self_attn.qkv_proj.weight"] = torch.cat([q, k, v])
    tensors[p + "mlp.gate_up_proj.weight"] = torch.cat([gate, up])
    model = build_model(config_from_hf(raw), tensors, backend=OPS)
    layer = model.model.layers[0]
    assert torch.equal(layer.self_attn.k_proj.weight, k.float())
    assert torch.equal(layer.mlp.up_proj.weight, up.float())


@pytest.mark.parametrize("bias", [False, True])
def test_fused_projections_give_the_same_logits(bias: bool) -> None:
    """fuse_projections (the engine's dense road): one qkv_proj and one gate_up_proj per
    layer, each with the rows of its parts, and logits as before, prefill and decode."""
    torch.manual_seed(1)
    raw = {**RAW, "attention_bias": bias, "num_hidden_layers": 2}
    tensors = _tensors()
    for name in list(tensors):  # a second layer, and the biases the config asks for
        if name.startswith("model.layers.0."):
            tensors[name.replace(".0.", ".1.", 1)] = torch.randn_like(tensors[name])
    if bias:
        for layer in (0, 1):
            for proj, rows in (("q", 16), ("k", 8), ("v", 8), ("o", 16)):
                tensors[f"model.layers.{layer}.self_attn.{proj}_proj.bias"] = torch.randn(rows)
    plain = build_model(config_from_hf(raw), tensors, backend=OPS)
    fused = fuse_projections(build_model(config_from_hf(raw), tensors, backend=OPS))
    for layer in fused.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        assert isinstance(attn.qkv_proj, Linear) and attn.qkv_proj.weight.shape == (32, 16)
        assert (attn.qkv_proj.bias is not None) == bias
        assert isinstance(mlp.gate_up_proj, Linear) and mlp.gate_up_proj.weight.shape == (48, 16)
        assert not hasattr(attn, "q_proj") and not hasattr(mlp, "gate_proj")
    q = tensors["model.layers.1.self_attn.q_proj.weight"].float()
    assert torch.equal(fused.model.layers[1].self_attn.qkv_proj.weight[:16], q)
    prompt = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
    want = SequenceRunner(plain, 1, 32, block_size=4)
    got = SequenceRunner(fused, 1, 32, block_size=4)
    for chunk in (prompt, [7], [8]):  # a prefill, then two decode steps
        torch.testing.assert_close(
            got.step([(0, chunk)])[0], want.step([(0, chunk)])[0], rtol=1e-4, atol=1e-4
        )  # products blocked differently; a wrong row order would be off by O(1)
