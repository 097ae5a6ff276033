"""QLoRA: LoRA over the base as `--quant int4` builds it. The loss and the LoRA gradients
equal those of the same adapters over the de-quantized base (dense bf16 projections with
the same values), which only holds if gradients flow back through every quantized
projection's kernel; the quantized base takes far less memory than the bf16 one."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from hearth.model.layers.linear import Linear
from hearth.model.layers.lora import LoraLinear, dense_weight, lora_layers
from hearth.model.layers.quant import Int4Linear
from hearth.tune.forward import flatten, token_losses
from hearth.tune.tokenize import TokenizedExample
from hearth.tune.train_config import TrainConfig
from hearth.tune.training_model import training_model

EXAMPLES = [
    TokenizedExample(tuple(range(3, 20)), (False,) * 6 + (True,) * 11, "a"),
    TokenizedExample((5, 9, 2, 77, 31, 8, 64, 12, 99), (False, False) + (True,) * 7, "b"),
]


def _nbytes(model: torch.nn.Module) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors if not t.requires_grad)


def _dequantized(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose adapted projections are dense bf16 Linears holding the de-quantized
    weights (the reference QLoRA's gradients must equal)."""
    ref = copy.deepcopy(model)
    for _, layer in lora_layers(ref):
        base = layer.base_layer
        dense = Linear(layer.in_features, layer.out_features, bias=False)
        dense.weight = torch.nn.Parameter(dense_weight(base).to(torch.bfloat16), False)
        layer.base_layer = dense
        layer.quantized_base = False
    return ref


def _grads(model: torch.nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    loss = token_losses(model, flatten(EXAMPLES))  # type: ignore[arg-type]
    loss.backward()
    grads = {}
    for path, layer in lora_layers(model):
        for part in ("lora_A", "lora_B"):
            grad = getattr(layer, part).weight.grad
            assert grad is not None
            grads[f"{path}.{part}"] = grad
    return loss.detach(), grads


def _qlora(folder: Path) -> torch.nn.Module:
    model = training_model(folder, TrainConfig(method="qlora"))
    adapted = dict(lora_layers(model))
    assert len(adapted) == 7 * 2 and all(
        isinstance(layer.base_layer, Int4Linear) for layer in adapted.values()
    )
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        f"{path}.lora_{x}.weight" for path in adapted for x in "AB"
    }
    torch.manual_seed(1)
    for layer in adapted.values():
        with torch.no_grad():
            layer.lora_B.weight.normal_(0.0, 0.05)  # B = 0 would leave A without gradient
    return model


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


def test_qlora_gradients_equal_the_dequantized_base(tiny_pair: Any, tmp_path: Path) -> None:
    """On the dense road (what an Int4Linear runs from DENSE_MIN_ROWS rows on: the int4
    weight expanded for the call) the forward is the reference's, so what is left to differ
    is the backward through the quantized projections."""
    tiny_pair("llama", intermediate_size=128)  # saved where tiny_pair keeps it
    qlora = _qlora(tmp_path / "llama-0")
    reference = _dequantized(qlora)
    for _, layer in lora_layers(qlora):
        layer.base_layer.dense_min_rows = 0
    loss, grads = _grads(qlora)
    ref_loss, ref_grads = _grads(reference)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-3, atol=1e-3)
    for name, want in ref_grads.items():
        assert _rel(grads[name], want) <= 1e-2, name


def test_qlora_through_the_lowbit_kernel(tiny_pair: Any, tmp_path: Path) -> None:
    """Few rows run on the low-bit kernel (as serving does): it rounds differently from the
    dense product (~0.7% a projection), so the gradients agree more loosely; without the
    custom backward the kernels cut the graph and the lowest layer's gradients are far off."""
    tiny_pair("llama", intermediate_size=128)
    qlora = _qlora(tmp_path / "llama-0")
    reference = _dequantized(qlora)
    cut = copy.deepcopy(qlora)
    loss, grads = _grads(qlora)
    ref_loss, ref_grads = _grads(reference)
    torch.testing.assert_close(loss, ref_loss, rtol=2e-2, atol=2e-2)
    name = "model.layers.0.self_attn.q_proj.lora_A"
    assert max(_rel(grads[n], want) for n, want in ref_grads.items()) <= 0.15
    for _, layer in lora_layers(cut):
        assert isinstance(layer, LoraLinear)
        layer.quantized_base = False
    _, cut_grads = _grads(cut)
    assert _rel(cut_grads[name], ref_grads[name]) > 3 * _rel(grads[name], ref_grads[name])


def test_qlora_base_is_smaller_than_the_bf16_one(tiny_pair: Any, tmp_path: Path) -> None:
    tiny_pair("llama", intermediate_size=128, hidden_size=128, num_attention_heads=4)
    folder = tmp_path / "llama-0"
    qlora = training_model(folder, TrainConfig(method="qlora"))
    lora = training_model(folder, TrainConfig(method="lora"), torch.bfloat16)
    assert _nbytes(qlora) < 0.6 * _nbytes(lora)
