"""Quantized linear layers for CPU: weights stay low-bit in memory and PyTorch's CPU kernels
multiply them directly (`_weight_int4pack_mm_for_cpu`, `_weight_int8pack_mm`), so a decode
step reads 4 or 8 bits per weight instead of 32. Activations enter and leave in bfloat16:
both kernels take bf16 activations (the int8 one has only a slow path for fp32).

  Int4Linear  w = (q - 8) * scale + zero, q in 0..15, one (scale, zero) per group of
              `group_size` input columns and output row (GGUF Q4_0 / Q4_1 map onto it exactly)
  Int8Linear  w = q * scale, q in -127..127, one scale per output row

Packing (from GGUF blocks or float weights) lives in quant_pack.py; choosing a layer per
tensor lives in quant_build.py. Knows nothing of files, names or models."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hearth.model.layers.ops import REFERENCE, LowbitMatmul, Ops

ACT_DTYPE = torch.bfloat16  # the activation dtype both kernels want
# From this many rows on (full prefill chunks), an Int4Linear expands its weight to bf16 for
# the call and runs the dense GEMM. Measured at 1 thread on SmolLM2's shapes: the int4
# kernel does ~110 GFLOP/s on 512 rows, the bf16 GEMM ~350, the expansion costs ~3 ns per
# weight; dense is ~25% faster at 512 rows, even at ~256, slower below (the int4 kernel
# reads 4x fewer bytes)
DENSE_MIN_ROWS = 384
# the CPU int4 packing (AVX-512 build): blocks of 64 output rows; in each block and input
# column, 32 bytes hold row d in the low nibble and row d + 32 in the high one
_PACK_BLOCK = 64


@dataclass(frozen=True)
class Int4Weight:
    """q: (N, K) int32 codes 0..15; scales_and_zeros: (K / group_size, N, 2) bf16."""

    q: torch.Tensor
    scales_and_zeros: torch.Tensor
    group_size: int

    def __post_init__(self) -> None:
        n, k = self.q.shape
        if self.group_size not in (32, 64, 128, 256) or k % self.group_size:
            raise ValueError(f"group_size {self.group_size} must be 32..256 and divide K={k}")
        if tuple(self.scales_and_zeros.shape) != (k // self.group_size, n, 2):
            raise ValueError(
                f"scales_and_zeros must be {(k // self.group_size, n, 2)}, "
                f"got {tuple(self.scales_and_zeros.shape)}"
            )

    def dequantize(self) -> torch.Tensor:
        """(N, K) float32: what the kernel multiplies by (for tests and accuracy checks)."""
        sz = self.scales_and_zeros.float().repeat_interleave(self.group_size, 0)  # (K, N, 2)
        return (self.q.float() - 8) * sz[..., 0].t() + sz[..., 1].t()


@dataclass(frozen=True)
class Int8Weight:
    """q: (N, K) int8; scales: (N,) bf16."""

    q: torch.Tensor
    scales: torch.Tensor

    def __post_init__(self) -> None:
        if self.q.dtype != torch.int8 or self.q.dim() != 2:
            raise ValueError(f"q must be 2-D int8, got {self.q.dtype} {tuple(self.q.shape)}")
        if tuple(self.scales.shape) != (self.q.shape[0],):
            raise ValueError(f"scales must be ({self.q.shape[0]},), got {tuple(self.scales.shape)}")

    def dequantize(self) -> torch.Tensor:
        return self.q.float() * self.scales.float()[:, None]


class Int4Linear(nn.Module):
    """y = x @ w.T (+ bias) with w held as int4 pairs: in the low-bit kernel's layout where
    it runs (the backend's `lowbit`, e.g. cpu/lowbit_matmul.py: AVX-512 VNNI, rows in 16s,
    groups of 32), else packed for PyTorch's `_weight_int4pack_mm_for_cpu`. One layout is
    kept, never both."""

    codes: torch.Tensor  # the low-bit layout (LowbitMatmul.pack_int4)
    scales: torch.Tensor
    mins: torch.Tensor
    packed: torch.Tensor  # or PyTorch's
    scales_and_zeros: torch.Tensor

    def __init__(
        self, weight: Int4Weight, bias: torch.Tensor | None = None, ops: Ops = REFERENCE
    ) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.q.shape
        self.group_size = weight.group_size
        self.bias = None if bias is None else bias.to(ACT_DTYPE)
        # float32 for an LM head (quant_build sets it): logits written once, not converted
        self.out_float32 = False
        self.kernel = _lowbit(ops, self.out_features, self.in_features, self.group_size)
        self.lowbit = self.kernel is not None
        if self.kernel is not None:
            codes, scales, mins = self.kernel.pack_int4(weight.q, weight.scales_and_zeros)
            self.register_buffer("codes", codes)
            self.register_buffer("scales", scales)
            self.register_buffer("mins", mins)
            self.dense_ok = True
            self.dense_min_rows = self.kernel.dense_min_rows
            return
        self.dense_min_rows = DENSE_MIN_ROWS
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(weight.q.int(), 2)
        self.register_buffer("packed", packed)  # (N, K / 2) uint8
        self.register_buffer("scales_and_zeros", weight.scales_and_zeros.to(ACT_DTYPE))
        # the dense road needs to read the packing back: only where it has the known layout
        n = self.out_features
        self.dense_ok = n % _PACK_BLOCK == 0 and torch.equal(
            _unpack_codes(packed[:_PACK_BLOCK], _PACK_BLOCK, self.in_features),
            weight.q[:_PACK_BLOCK].to(torch.uint8),
        )

    def dense_weight(self) -> torch.Tensor:
        """(N, K) bf16: the weight the int4 kernel multiplies by, expanded from the packing
        (each value rounded to bf16)."""
        if self.kernel is not None:
            return self.kernel.unpack_int4(self.codes, self.scales, self.mins)
        n, k = self.out_features, self.in_features
        codes = _unpack_codes(self.packed, n, k).view(n, k // self.group_size, self.group_size)
        sz = self.scales_and_zeros.float()  # (G, N, 2)
        scale = sz[..., 0].t().to(ACT_DTYPE).contiguous()[..., None]  # (N, G, 1)
        offset = (sz[..., 1] - 8.0 * sz[..., 0]).t().to(ACT_DTYPE).contiguous()[..., None]
        # w = q * scale + offset, (N, G, group)
        return torch.addcmul(offset, codes.to(ACT_DTYPE), scale).view(n, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., K) -> (..., N) bf16
        flat = x.reshape(-1, self.in_features).to(ACT_DTYPE)
        if self.dense_ok and flat.shape[0] >= self.dense_min_rows:
            y = torch.nn.functional.linear(flat, self.dense_weight())
        elif self.kernel is not None:
            y = self.kernel.int4_matmul(flat, self.codes, self.scales, self.mins, self.out_float32)
        else:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(
                flat, self.packed, self.group_size, self.scales_and_zeros
            )
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        road = "low-bit kernel" if self.lowbit else "torch kernel"
        return (
            f"in={self.in_features}, out={self.out_features}, int4 group={self.group_size}, {road}"
        )


def _lowbit(ops: Ops, n: int, k: int, group_size: int = 32) -> LowbitMatmul | None:
    """The backend's low-bit kernel where it takes an (n, k) weight of this group size."""
    kernel = ops.lowbit
    return kernel if kernel is not None and kernel.supports(n, k, group_size) else None


def _unpack_codes(packed: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """(n, k / 2) uint8 in the CPU int4 packing (n a multiple of 64) -> (n, k) uint8 codes."""
    blocks = packed.reshape(n // _PACK_BLOCK, k, _PACK_BLOCK // 2)
    codes = torch.cat([blocks & 0x0F, blocks >> 4], dim=2)  # (n / 64, k, 64)
    return codes.transpose(1, 2).reshape(n, k)


class Int8Tensors:
    """An int8 weight as the layer that multiplies by it holds it: in the low-bit kernel's
    layout where it runs (codes, corr, scales float32), else row-major for PyTorch's
    `_weight_int8pack_mm` (codes (N, K), scales bf16). An embedding and a tied LM head
    share one of these."""

    def __init__(
        self, weight: Int8Weight, reuse_storage: bool = False, ops: Ops = REFERENCE
    ) -> None:
        """reuse_storage: the low-bit layout may take over weight.q's memory (the caller
        made the weight for this layer alone)."""
        n, k = weight.q.shape
        self.shape = (n, k)
        self.kernel = _lowbit(ops, n, k)
        self.lowbit = self.kernel is not None
        self.corr: torch.Tensor | None = None
        if self.kernel is not None:
            self.codes, self.corr, self.scales = self.kernel.pack_int8(
                weight.q, weight.scales, reuse_storage
            )
        else:
            self.codes, self.scales = weight.q.contiguous(), weight.scales.to(ACT_DTYPE)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows `ids` (T,) de-quantized -> (T, K) bf16."""
        codes = self.kernel.int8_rows(self.codes, ids) if self.kernel else self.codes[ids]
        return codes.to(ACT_DTYPE) * self.scales[ids, None].to(ACT_DTYPE)

    def matmul(self, x: torch.Tensor, out_float32: bool = False) -> torch.Tensor:
        """(M, K) bf16 -> (M, N) bf16, or float32 from the low-bit kernel with out_float32."""
        if self.kernel is not None:
            assert self.corr is not None
            return self.kernel.int8_matmul(x, self.codes, self.corr, self.scales, out_float32)
        return torch.ops.aten._weight_int8pack_mm(x, self.codes, self.scales)


def _register(module: nn.Module, tensors: Int8Tensors) -> None:
    """The tensors as the module's buffers (so .to() and state_dict see them)."""
    module.register_buffer("qweight", tensors.codes)
    module.register_buffer("scales", tensors.scales)
    if tensors.corr is not None:
        module.register_buffer("corr", tensors.corr)


class Int8Linear(nn.Module):
    """y = x @ (q * scale).T (+ bias) with per-output-row scales."""

    def __init__(
        self,
        weight: Int8Weight | Int8Tensors,
        bias: torch.Tensor | None = None,
        reuse_storage: bool = False,
        ops: Ops = REFERENCE,
    ) -> None:
        super().__init__()
        self.int8 = (
            weight if isinstance(weight, Int8Tensors) else Int8Tensors(weight, reuse_storage, ops)
        )
        self.out_features, self.in_features = self.int8.shape
        _register(self, self.int8)
        self.bias = None if bias is None else bias.to(ACT_DTYPE)
        self.out_float32 = False  # as Int4Linear's

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., K) -> (..., N) bf16
        flat = x.reshape(-1, self.in_features).to(ACT_DTYPE)
        y = self.int8.matmul(flat, self.out_float32)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        road = "low-bit kernel" if self.int8.lowbit else "torch kernel"
        return f"in={self.in_features}, out={self.out_features}, int8 per-channel, {road}"


class Int8Embedding(nn.Module):
    """Token embeddings from an Int8Weight (rows are tokens). With tied embeddings the same
    buffers also serve as the LM head (`as_linear`), so the table is in memory once."""

    def __init__(
        self, weight: Int8Weight, reuse_storage: bool = False, ops: Ops = REFERENCE
    ) -> None:
        super().__init__()
        self.int8 = Int8Tensors(weight, reuse_storage, ops)
        _register(self, self.int8)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (T,) -> (T, H) bf16
        return self.int8.rows(ids)

    def as_linear(self) -> Int8Linear:
        """The tied LM head: an Int8Linear over the same storage (no copy)."""
        return Int8Linear(self.int8)
