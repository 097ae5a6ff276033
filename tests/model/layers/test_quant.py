"""quant.py / quant_pack.py: the int4 and int8 layers multiply what they claim to, and GGUF
blocks re-pack exactly (only the fp16 -> bf16 rounding of block scales is lost)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gguf.constants import GGMLQuantizationType as T
from tiny_models import backend_under_test

from hearth.model.layers.quant import (
    DENSE_MIN_ROWS,
    Int4Linear,
    Int8Embedding,
    Int8Linear,
)
from hearth.model.quant_pack import int4_from_gguf, quantize_int4, quantize_int8
from hearth.weights.gguf import load_gguf

OPS = backend_under_test()


def _bf16_step(x: torch.Tensor) -> float:
    """The spacing of bf16 numbers around the largest |x| (the rounding the re-pack allows)."""
    return float(x.abs().max()) * 2**-7


def test_int4_linear_multiplies_its_dequantized_weight() -> None:
    torch.manual_seed(0)
    weight = quantize_int4(torch.randn(96, 128))
    layer = Int4Linear(weight, bias=torch.randn(96), ops=OPS)
    x = torch.randn(5, 128).bfloat16()
    expected = x.float() @ weight.dequantize().t() + layer.bias.float()
    got = layer(x).float()
    assert got.shape == (5, 96)
    # the low-bit kernel also rounds the activations to int8 per 32 columns (~0.4% each)
    assert torch.allclose(got, expected, atol=0.03 * float(expected.abs().max()), rtol=0.02)
    assert float((got - expected).norm() / expected.norm()) < 0.01


def test_int4_linear_dense_road_for_long_inputs() -> None:
    """From DENSE_MIN_ROWS rows on the weight is expanded from the packing to bf16: it is
    the dequantized weight up to bf16 rounding, and the outputs agree with the few-row
    road's (the low-bit kernel, or PyTorch's int4 kernel where it is off)."""
    torch.manual_seed(0)
    weight = quantize_int4(torch.randn(192, 96))
    layer = Int4Linear(weight, ops=OPS)
    assert layer.dense_ok  # the packing has the layout the expansion reads
    # the low-bit kernel keeps long inputs too unless the CPU has AMX's bf16 GEMMs
    assert layer.dense_min_rows == (
        layer.kernel.dense_min_rows if layer.kernel is not None else DENSE_MIN_ROWS
    )
    layer.dense_min_rows = DENSE_MIN_ROWS  # the dense road, on every CPU
    reference = weight.dequantize()
    assert (layer.dense_weight().float() - reference).abs().max() <= _bf16_step(reference)
    x = torch.randn(DENSE_MIN_ROWS, 96).bfloat16()
    few_rows = torch.cat([layer(x[i : i + 64]) for i in range(0, DENSE_MIN_ROWS, 64)]).float()
    dense = layer(x).float()
    exact = x.float() @ reference.t()
    assert dense.shape == (DENSE_MIN_ROWS, 192)
    # both near the exact product: the dense road within bf16 rounding of weights and
    # output; the few-row road also rounds the activations (int8 in the low-bit kernel)
    scale = float(exact.abs().max())
    assert (few_rows - exact).abs().max() < 0.02 * scale
    assert (dense - exact).abs().max() < 0.01 * scale
    assert not torch.equal(dense, few_rows)  # the dense road ran (different rounding)
    # the low-bit layout expands at any row count in 16s; PyTorch's packing only in 64s
    narrow = Int4Linear(quantize_int4(torch.randn(48, 96)), ops=OPS)
    assert narrow.dense_ok == narrow.lowbit


def test_quantize_int4_error_is_within_half_a_step() -> None:
    torch.manual_seed(1)
    w = torch.randn(64, 256)
    q = quantize_int4(w)
    step = (w.reshape(64, -1, 32).amax(-1) - w.reshape(64, -1, 32).amin(-1)) / 15
    err = (q.dequantize() - w).abs().reshape(64, -1, 32).amax(-1)
    assert bool((err <= step * 0.5 + 0.02).all())


def test_int8_linear_and_embedding_share_one_table() -> None:
    torch.manual_seed(2)
    w = torch.randn(50, 64)
    q = quantize_int8(w)
    assert (q.dequantize() - w).abs().max() <= w.abs().max() / 127
    emb = Int8Embedding(q, ops=OPS)
    head = emb.as_linear()
    assert head.qweight.data_ptr() == emb.qweight.data_ptr()
    ids = torch.tensor([3, 7, 49])
    assert torch.allclose(emb(ids).float(), q.dequantize()[ids], atol=0.02)
    x = torch.randn(2, 64).bfloat16()
    assert isinstance(head, Int8Linear)
    assert torch.allclose(head(x).float(), x.float() @ q.dequantize().t(), atol=0.2, rtol=0.02)


def test_q4_1_repacks_exactly(smollm2_gguf: Path) -> None:
    tensors = load_gguf(smollm2_gguf, keep_quantized=True).tensors
    raw = tensors["model.layers.0.mlp.down_proj.weight"]
    assert raw.ggml_type == T.Q4_1  # type: ignore[attr-defined]
    reference = raw.dequantize()  # type: ignore[attr-defined]
    packed = int4_from_gguf(raw)  # type: ignore[arg-type]
    assert (packed.dequantize() - reference).abs().max() <= _bf16_step(reference)


def test_q4_k_repacks_exactly(gemma3_gguf: Path) -> None:
    tensors = load_gguf(gemma3_gguf, keep_quantized=True).tensors
    raw = tensors["model.layers.0.self_attn.o_proj.weight"]
    assert raw.ggml_type == T.Q4_K  # type: ignore[attr-defined]
    reference = raw.dequantize()  # type: ignore[attr-defined]
    packed = int4_from_gguf(raw)  # type: ignore[arg-type]
    # exact codes; the loss is rounding each group's scale and zero to bf16
    assert (packed.dequantize() - reference).abs().max() <= 2 * _bf16_step(reference)
    requantized = quantize_int4(reference)
    assert (requantized.dequantize() - reference).abs().max() > (
        packed.dequantize() - reference
    ).abs().max()


def test_non_4bit_types_have_no_exact_int4(smollm2_gguf: Path) -> None:
    raw = load_gguf(smollm2_gguf, keep_quantized=True).tensors["model.embed_tokens.weight"]
    with pytest.raises(ValueError, match="Q8_0"):
        int4_from_gguf(raw)  # type: ignore[arg-type]
