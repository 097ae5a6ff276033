"""GPTQ and AWQ 4-bit tensors, packed here as the formats document it from a tiny random
weight, unpack into hearth's int4 parts that de-quantize to exactly the formats' reference
w = scale * (q - zero), and run on hearth's int4 linear (Int4Linear) to the same outputs."""

from __future__ import annotations

import pytest
import torch

from hearth.errors import UnsupportedModelError
from hearth.model.backend import select_backend
from hearth.model.layers.quant import Int4Linear, Int4Weight
from hearth.weights.gptq_awq import (
    AWQ_ORDER,
    Int4CheckpointTensors,
    Int4Format,
    dequantize_gptq_act_order,
    unpack_awq,
    unpack_gptq,
)

N, K, GROUP = 64, 128, 32


def _rtn(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric 4-bit round-to-nearest per group: codes (K, N), zeros (G, N), scales (G, N)
    (fp16, as checkpoints store them)."""
    g = w.t().reshape(K // GROUP, GROUP, N)  # (G, group, N)
    lo, hi = g.amin(dim=1), g.amax(dim=1)
    scales = ((hi - lo) / 15).clamp(min=1e-8).half()
    zeros = torch.round(-lo / scales.float()).clamp(0, 15).int()
    codes = torch.round(g / scales.float()[:, None] + zeros[:, None]).clamp(0, 15).int()
    return codes.reshape(K, N), zeros, scales


def _reference(codes: torch.Tensor, zeros: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    z = zeros.repeat_interleave(GROUP, 0).float()
    s = scales.repeat_interleave(GROUP, 0).float()
    return (s * (codes.float() - z)).t()  # (N, K)


def _pack(values: torch.Tensor, order: tuple[int, ...] = tuple(range(8))) -> torch.Tensor:
    """Pack the last dimension eight nibbles a word, nibble i holding column order[i]."""
    v = values.to(torch.int64).reshape(*values.shape[:-1], -1, 8)
    word = torch.zeros(v.shape[:-1], dtype=torch.int64)
    for i, col in enumerate(order):
        word |= v[..., col] << (4 * i)
    return (word - ((word >> 31) << 32)).to(torch.int32)  # as int32 bits


@pytest.fixture
def quantized() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return _rtn(torch.randn(N, K) * 0.05)


def _check(q: torch.Tensor, sz: torch.Tensor, ref: torch.Tensor) -> None:
    weight = Int4Weight(q, sz.to(torch.bfloat16), GROUP)
    # the parts are exact in float32; the kernels keep (scale, offset) in bf16
    exact = (q.float() - 8) * sz[..., 0].repeat_interleave(GROUP, 0).t()
    exact = exact + sz[..., 1].repeat_interleave(GROUP, 0).t()
    torch.testing.assert_close(exact, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weight.dequantize(), ref, atol=2e-3, rtol=1e-2)
    x = torch.randn(3, K)
    with torch.inference_mode():
        # on the backend hearth selects here (the cpu kernels where they run)
        got = Int4Linear(weight, ops=select_backend())(x.to(torch.bfloat16)).float()
    want = x @ weight.dequantize().t()
    torch.testing.assert_close(got, want, atol=5e-2, rtol=5e-2)


def test_gptq(quantized: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    codes, zeros, scales = quantized
    qweight = _pack(codes.t()).t().contiguous()  # (K / 8, N): along the inputs
    qzeros = _pack(zeros - 1)  # v1 stores zero - 1
    g_idx = torch.arange(K, dtype=torch.int32) // GROUP
    q, sz = unpack_gptq(qweight, qzeros, scales, GROUP, g_idx)
    _check(q, sz, _reference(codes, zeros, scales))
    with pytest.raises(UnsupportedModelError, match="act-order"):
        unpack_gptq(qweight, qzeros, scales, GROUP, g_idx.flip(0))


def test_gptq_act_order_loads_dense() -> None:
    """desc_act: GPTQ quantizes the inputs in a permuted order (perm), groups of GROUP runs
    of that order; qweight keeps the original input order and g_idx[k] names input k's
    group. The loader serves the dense weight it stands for."""
    torch.manual_seed(1)
    w = torch.randn(N, K) * 0.05
    perm = torch.randperm(K)
    codes_p, zeros, scales = _rtn(w[:, perm])  # codes in quantization order
    codes = torch.empty_like(codes_p)
    codes[perm] = codes_p
    g_idx = torch.empty(K, dtype=torch.int32)
    g_idx[perm] = torch.arange(K, dtype=torch.int32) // GROUP
    want = torch.empty(N, K)
    want[:, perm] = _reference(codes_p, zeros, scales)
    qweight = _pack(codes.t()).t().contiguous()
    qzeros = _pack(zeros - 1)
    with pytest.raises(UnsupportedModelError, match="act-order"):
        unpack_gptq(qweight, qzeros, scales, GROUP, g_idx)
    dense = dequantize_gptq_act_order(qweight, qzeros, scales, g_idx)
    torch.testing.assert_close(dense, want, atol=1e-6, rtol=1e-5)
    assert (dense - w).abs().max() < scales.float().max()  # within a step of the weight
    inner = {"l.qweight": qweight, "l.qzeros": qzeros, "l.scales": scales, "l.g_idx": g_idx}
    tensors = Int4CheckpointTensors(inner, Int4Format("gptq", GROUP, 1), None)
    assert list(tensors) == ["l.weight"]
    got = tensors["l.weight"]
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    with pytest.raises(UnsupportedModelError, match="g_idx"):
        dequantize_gptq_act_order(qweight, qzeros, scales, g_idx + K)


def test_awq(quantized: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    codes, zeros, scales = quantized
    q, sz = unpack_awq(_pack(codes, AWQ_ORDER), _pack(zeros, AWQ_ORDER), scales, GROUP)
    _check(q, sz, _reference(codes, zeros, scales))
    with pytest.raises(UnsupportedModelError, match="groups of"):
        unpack_awq(_pack(codes, AWQ_ORDER), _pack(zeros, AWQ_ORDER), scales, 48)


LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _checkpoints(tmp_path, method: str):  # type: ignore[no-untyped-def]
    """A tiny Llama saved twice: as a GPTQ/AWQ 4-bit folder packed here, and as the float
    folder of its de-quantized reference weights."""
    import json

    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    packed: dict[str, torch.Tensor] = {}
    for name in list(state):
        if not any(f".{p}." in name for p in LINEARS) or not name.endswith(".weight"):
            packed[name] = state[name]
            continue
        w = state[name]
        n, k = w.shape
        g = w.t().reshape(k // GROUP, GROUP, n)
        lo, hi = g.amin(dim=1), g.amax(dim=1)
        scales = ((hi - lo) / 15).clamp(min=1e-8).half()
        zeros = torch.round(-lo / scales.float()).clamp(0, 15).int()
        codes = torch.round(g / scales.float()[:, None] + zeros[:, None]).clamp(0, 15).int()
        codes = codes.reshape(k, n)
        state[name] = _ref(codes, zeros, scales)
        prefix = name.removesuffix(".weight")
        if method == "gptq":
            packed[prefix + ".qweight"] = _pack(codes.t()).t().contiguous()
            packed[prefix + ".qzeros"] = _pack(zeros - 1)
            packed[prefix + ".g_idx"] = torch.arange(k, dtype=torch.int32) // GROUP
        else:
            packed[prefix + ".qweight"] = _pack(codes, AWQ_ORDER)
            packed[prefix + ".qzeros"] = _pack(zeros, AWQ_ORDER)
        packed[prefix + ".scales"] = scales
    ref_dir, q_dir = tmp_path / "ref", tmp_path / method
    model.load_state_dict(state)
    model.save_pretrained(ref_dir)
    q_dir.mkdir()
    save_file({k: v.contiguous() for k, v in packed.items()}, str(q_dir / "model.safetensors"))
    raw = json.loads((ref_dir / "config.json").read_text())
    raw["quantization_config"] = {"quant_method": method, "bits": 4, "group_size": GROUP}
    if method == "awq":
        raw["quantization_config"]["version"] = "gemm"
    (q_dir / "config.json").write_text(json.dumps(raw))
    return ref_dir, q_dir


def _ref(codes: torch.Tensor, zeros: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    k = codes.shape[0]
    z = zeros.repeat_interleave(GROUP, 0).float()[:k]
    s = scales.repeat_interleave(GROUP, 0).float()[:k]
    return (s * (codes.float() - z)).t().contiguous()


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_checkpoint_loads_low_bit_and_matches_the_dequantized_reference(
    tmp_path,
    method: str,  # type: ignore[no-untyped-def]
) -> None:
    from hearth.bench.accuracy import text_logits
    from hearth.model.quant_load import load_decoder

    ref_dir, q_dir = _checkpoints(tmp_path, method)
    ids = list(range(3, 40))
    with torch.inference_mode():
        ref = text_logits(load_decoder(ref_dir, "none").decoder, ids)
        dense = text_logits(load_decoder(q_dir, "none").decoder, ids)
        low = load_decoder(q_dir)  # auto: the checkpoint's own 4 bits on the int4 kernels
        got = text_logits(low.decoder, ids)
    torch.testing.assert_close(dense, ref, atol=1e-5, rtol=1e-5)
    assert low.quant == "auto"
    assert sum(isinstance(m, Int4Linear) for m in low.decoder.modules()) >= 2 * 4
    # int4 kernels with bf16 activations: the reference's logits up to bf16 rounding
    assert (got - ref).abs().max() < 0.02 * ref.abs().max() + 1e-2
