"""The C low-bit matmul kernels against the arithmetic they claim: activations rounded to
int8 per 32 columns (scale max|x| / 127), products with the weights the layout holds, in
float64 here; the kernel's only further loss is float32 accumulation and the bf16 output.
Every test runs on each instruction-set level's road this CPU runs (AVX-512 VNNI, AVX2,
portable C), and the roads agree bit for bit. Also: the layouts round-trip, thread counts agree bit for bit, shapes it cannot take are
refused, and the layers fall back to PyTorch's kernels on a backend without it."""

from __future__ import annotations

import pytest
import torch
from isa_levels import use_level

from hearth.model.cpu import lowbit_matmul as lowbit_kernel
from hearth.model.cpu.backend import CpuBackend
from hearth.model.layers.ops import REFERENCE
from hearth.model.layers.quant import Int4Linear, Int8Embedding, Int8Linear
from hearth.model.quant_pack import quantize_int4, quantize_int8

pytestmark = [
    pytest.mark.skipif(not lowbit_kernel.available(), reason="kernel unavailable (no C compiler)"),
    pytest.mark.usefixtures("isa_level"),  # each instruction-set level's road (conftest.py)
]
BACKEND = CpuBackend()
ONE = (1, False)  # (threads, on the pool)


def int4_matmul(x, codes, scales, mins, out_f32=False, threads=ONE):  # type: ignore[no-untyped-def]
    return lowbit_kernel.int4_matmul(x, codes, scales, mins, out_f32, threads)


def int8_matmul(x, codes, corr, scales, out_f32=False, threads=ONE):  # type: ignore[no-untyped-def]
    return lowbit_kernel.int8_matmul(x, codes, corr, scales, out_f32, threads)


def _quantized_activations(x: torch.Tensor) -> torch.Tensor:
    """x (M, K) -> what the kernel multiplies by: per 32 columns round(x / d) * d, d = amax/127."""
    g = x.double().reshape(x.shape[0], -1, 32)
    d = g.abs().amax(-1, keepdim=True) / 127
    q = torch.where(d > 0, torch.round(g / torch.where(d > 0, d, 1.0)), 0.0)
    return (q * d).reshape(x.shape)


def _int4_weight(codes: torch.Tensor, scales: torch.Tensor, mins: torch.Tensor) -> torch.Tensor:
    """The layout's weight q * d + m in float64 (unpack_int4 without the bf16 rounding)."""
    nb, g = codes.shape[:2]
    q = torch.stack([codes & 0x0F, codes >> 4], dim=4).permute(0, 3, 1, 2, 4, 5)
    q = q.reshape(nb * 16, g, 32).double()

    def rows(t: torch.Tensor) -> torch.Tensor:
        return t.transpose(1, 2).reshape(nb * 16, g, 1).double()

    return (q * rows(scales) + rows(mins)).reshape(nb * 16, g * 32)


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    # bf16 output: half a unit in the 8th bit of each value, plus float32 sums
    tol = want.abs() * 2**-8 + want.abs().max() * 1e-5
    assert bool(((got.double() - want).abs() <= tol).all()), (got.double() - want).abs().max()


@pytest.mark.parametrize("rows", [1, 3, 4, 5, 17])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_int4_matmul_is_the_quantized_product(rows: int, dtype: torch.dtype) -> None:
    torch.manual_seed(rows)
    weight = quantize_int4(torch.randn(96, 160) * 0.1)
    codes, scales, mins = lowbit_kernel.pack_int4(weight.q, weight.scales_and_zeros)
    x = torch.randn(rows, 160).to(dtype)
    want = _quantized_activations(x) @ _int4_weight(codes, scales, mins).t()
    got = int4_matmul(x, codes, scales, mins)
    assert got.dtype == torch.bfloat16 and got.shape == (rows, 96)
    _close(got, want)
    # and the layout holds the weight it was given (fp16 rounding of scale and min only)
    assert (_int4_weight(codes, scales, mins) - weight.dequantize().double()).abs().max() < 2e-3


@pytest.mark.parametrize("rows", [1, 2, 4, 7])
def test_int8_matmul_is_the_quantized_product(rows: int) -> None:
    torch.manual_seed(10 + rows)
    weight = quantize_int8(torch.randn(48, 96))
    codes, corr, scales = lowbit_kernel.pack_int8(weight.q, weight.scales)
    x = torch.randn(rows, 96).bfloat16()
    want = _quantized_activations(x) @ weight.dequantize().double().t()
    _close(int8_matmul(x, codes, corr, scales), want)


def test_extreme_codes_and_zero_rows() -> None:
    # codes at 0 / 15 and -127 / 127, an all-zero activation row: no overflow, zeros stay 0
    q4 = torch.tensor([[0, 15] * 16] * 16, dtype=torch.int32)
    sz = torch.tensor([[[1.0, 8.0]] * 16], dtype=torch.bfloat16)  # w = q
    codes, scales, mins = lowbit_kernel.pack_int4(q4, sz)
    x = torch.stack([torch.full((32,), 3.0), torch.zeros(32)]).bfloat16()
    got = int4_matmul(x, codes, scales, mins).float()
    assert torch.equal(got[0], torch.full((16,), 3.0 * 15 * 16))
    assert torch.equal(got[1], torch.zeros(16))
    q8 = torch.tensor([[-127, 127] * 16] * 16, dtype=torch.int8)
    c8, corr, s8 = lowbit_kernel.pack_int8(q8, torch.ones(16, dtype=torch.bfloat16))
    y = torch.tensor([[-1.0, 1.0] * 16]).bfloat16()
    assert torch.equal(int8_matmul(y, c8, corr, s8).float(), torch.full((1, 16), 127.0 * 32))


def test_threads_give_identical_results() -> None:
    torch.manual_seed(3)
    weight = quantize_int4(torch.randn(256, 64))
    packed = lowbit_kernel.pack_int4(weight.q, weight.scales_and_zeros)
    x = torch.randn(6, 64).bfloat16()
    one = int4_matmul(x, *packed)
    two = int4_matmul(x, *packed, threads=(2, False))
    assert torch.equal(one, two)


def test_layouts_round_trip() -> None:
    torch.manual_seed(4)
    w4 = quantize_int4(torch.randn(32, 64))
    codes, scales, mins = lowbit_kernel.pack_int4(w4.q, w4.scales_and_zeros)
    dense = lowbit_kernel.unpack_int4(codes, scales, mins)
    assert dense.dtype == torch.bfloat16
    assert (dense.float() - w4.dequantize()).abs().max() <= w4.dequantize().abs().max() * 2**-7
    w8 = quantize_int8(torch.randn(48, 64))
    c8, _, _ = lowbit_kernel.pack_int8(w8.q, w8.scales)
    ids = torch.tensor([0, 17, 47, 17])
    assert torch.equal(lowbit_kernel.int8_rows(c8, ids), w8.q[ids])


def test_shapes_it_cannot_take() -> None:
    assert lowbit_kernel.supports(32, 64)
    assert not lowbit_kernel.supports(40, 64)  # rows not in 16s
    assert not lowbit_kernel.supports(32, 48)  # columns not in 32s
    assert not lowbit_kernel.supports(32, 128, group_size=64)
    codes, scales, mins = lowbit_kernel.pack_int4(
        torch.zeros(16, 64, dtype=torch.int32), torch.ones(2, 16, 2, dtype=torch.bfloat16)
    )
    with pytest.raises(ValueError, match="columns"):
        int4_matmul(torch.zeros(1, 32).bfloat16(), codes, scales, mins)


def test_layers_take_the_kernel_and_share_the_tied_table() -> None:
    torch.manual_seed(5)
    layer = Int4Linear(quantize_int4(torch.randn(64, 96)), ops=BACKEND)
    assert layer.lowbit and not hasattr(layer, "packed")  # one layout kept, not two
    w8 = quantize_int8(torch.randn(80, 64))
    emb = Int8Embedding(w8, ops=BACKEND)
    head = emb.as_linear()
    assert isinstance(head, Int8Linear) and head.int8.lowbit
    assert head.qweight.data_ptr() == emb.qweight.data_ptr()
    ids = torch.tensor([1, 79])
    assert torch.allclose(emb(ids).float(), w8.dequantize()[ids], atol=0.02)


@pytest.mark.parametrize("ops", [REFERENCE, CpuBackend(disabled=("lowbit",))], ids=["torch", "off"])
def test_layers_fall_back_to_torch_kernels_when_off(ops: object) -> None:
    torch.manual_seed(6)
    weight = quantize_int4(torch.randn(64, 96))
    layer = Int4Linear(weight, ops=ops)  # type: ignore[arg-type]
    assert not layer.lowbit and hasattr(layer, "packed")
    x = torch.randn(2, 96).bfloat16()
    want = x.double() @ weight.dequantize().double().t()
    assert torch.allclose(layer(x).double(), want, atol=0.05 * float(want.abs().max()))
    head = Int8Embedding(quantize_int8(torch.randn(64, 32)), ops=ops).as_linear()  # type: ignore[arg-type]
    assert not head.int8.lowbit
    assert head(torch.randn(1, 32).bfloat16()).shape == (1, 64)


def test_float32_output_for_logits() -> None:
    # an LM head writes float32 logits directly; they round to the bf16 output
    torch.manual_seed(7)
    head = Int8Embedding(quantize_int8(torch.randn(64, 32)), ops=BACKEND).as_linear()
    x = torch.randn(3, 32).bfloat16()
    bf16 = head(x)
    head.out_float32 = True
    f32 = head(x)
    assert bf16.dtype == torch.bfloat16 and f32.dtype == torch.float32
    assert torch.equal(f32.bfloat16(), bf16)


def test_int8_packing_in_the_weights_own_memory() -> None:
    # the load packs the 28 MB embedding in place: same layout as a copy, no second buffer
    torch.manual_seed(8)
    w8 = quantize_int8(torch.randn(96, 64))
    copied = lowbit_kernel.pack_int8(w8.q, w8.scales)
    q = w8.q.clone()
    in_place = lowbit_kernel.pack_int8(q, w8.scales, reuse_storage=True)
    assert in_place[0].data_ptr() == q.data_ptr()
    for a, b in zip(copied, in_place, strict=True):
        assert torch.equal(a, b)


def test_every_road_gives_the_same_bits(isa_level: str) -> None:
    # the three roads sum the same integers and round the same way: identical outputs
    torch.manual_seed(9)
    w4 = quantize_int4(torch.randn(64, 256) * 0.1)
    packed4 = lowbit_kernel.pack_int4(w4.q, w4.scales_and_zeros)
    w8 = quantize_int8(torch.randn(48, 256))
    packed8 = lowbit_kernel.pack_int8(w8.q, w8.scales)
    x = torch.randn(9, 256).bfloat16()
    here = (int4_matmul(x, *packed4, out_f32=True), int8_matmul(x, *packed8, out_f32=True))
    assert lowbit_kernel.road() == {"avx512": "avx512-vnni", "avx2": "avx2"}.get(isa_level, "c")
    use_level("generic")  # the portable C: the definition the vector roads implement
    assert lowbit_kernel.road() == "c"
    reference = (int4_matmul(x, *packed4, out_f32=True), int8_matmul(x, *packed8, out_f32=True))
    assert torch.equal(here[0], reference[0]) and torch.equal(here[1], reference[1])
