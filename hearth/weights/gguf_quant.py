"""One GGUF tensor's bytes → a torch tensor: float types viewed, quantized types de-quantized
through `gguf.quants.dequantize`, or kept quantized as a `GGUFQuantizedTensor` for kernels that
consume the blocks directly (the CPU int4/int8 paths repack them).

Knows the ggml block formats only through the `gguf` package; knows nothing of names or models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from hearth.errors import UnsupportedModelError
from hearth.weights.gguf_metadata import GGUFTensorInfo

__all__ = ["FLOAT_TYPES", "GGUFQuantizedTensor", "read_tensor"]

FLOAT_TYPES = frozenset(
    {GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16}
)

_NUMPY_FLOAT = {
    GGMLQuantizationType.F32: np.float32,
    GGMLQuantizationType.F16: np.float16,
    GGMLQuantizationType.BF16: np.uint16,  # numpy has no bfloat16: reinterpreted in torch
}


_NOT_WEIGHTS = frozenset(
    {
        GGMLQuantizationType.I8,
        GGMLQuantizationType.I16,
        GGMLQuantizationType.I32,
        GGMLQuantizationType.I64,
        GGMLQuantizationType.F64,
    }
)


@dataclass(frozen=True)
class GGUFQuantizedTensor:
    """A tensor still in ggml blocks.

    ggml_type: the quant type (Q4_1, Q8_0, Q4_K, ...).
    data: uint8, shape (*shape[:-1], bytes_per_row) — each row's blocks, in file order; a
      read-only view of the memory-mapped file until something copies it.
    shape: the logical (de-quantized) shape, torch order: (out_features, in_features) for a
      linear weight.
    """

    ggml_type: GGMLQuantizationType
    data: torch.Tensor
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        block_size, type_size = GGML_QUANT_SIZES[self.ggml_type]
        if not self.shape or self.shape[-1] % block_size:
            raise ValueError(f"shape {self.shape} does not fit {self.ggml_type.name} blocks")
        expected = (*self.shape[:-1], self.shape[-1] // block_size * type_size)
        if tuple(self.data.shape) != expected or self.data.dtype != torch.uint8:
            raise ValueError(
                f"data must be uint8 of shape {expected}, got {tuple(self.data.shape)}"
            )

    @property
    def block_size(self) -> int:
        return GGML_QUANT_SIZES[self.ggml_type][0]

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The de-quantized tensor, shape `self.shape`, in `dtype`."""
        return _dequantize(self.data.numpy(), self.ggml_type, self.shape, dtype)


def _dequantize(
    raw: np.ndarray, ggml_type: GGMLQuantizationType, shape: tuple[int, ...], dtype: torch.dtype
) -> torch.Tensor:
    values = quants.dequantize(raw, ggml_type)  # float32, logical shape
    return torch.from_numpy(np.ascontiguousarray(values).reshape(shape)).to(dtype)


def read_tensor(
    mapped: np.ndarray,
    info: GGUFTensorInfo,
    dtype: torch.dtype = torch.float32,
    keep_quantized: bool = False,
) -> torch.Tensor | GGUFQuantizedTensor:
    """Read tensor `info` from `mapped`: the whole file as a uint8 memmap, opened
    copy-on-write (mode "c") so torch can view it without copying and nothing reaches the file.

    Float tensors (F32, F16, BF16) come back in `dtype` (no copy when the type already
    matches). Quantized tensors are de-quantized to `dtype`, or with `keep_quantized` returned
    as a GGUFQuantizedTensor viewing the file. Raises UnsupportedModelError for a quant type
    that cannot be de-quantized.
    """
    raw = mapped[info.offset : info.offset + info.n_bytes]
    if info.ggml_type in FLOAT_TYPES:
        values = raw.view(_NUMPY_FLOAT[info.ggml_type]).reshape(info.shape)
        tensor = torch.from_numpy(values)
        if info.ggml_type == GGMLQuantizationType.BF16:
            tensor = tensor.view(torch.bfloat16)
        return tensor.to(dtype)
    if info.ggml_type in _NOT_WEIGHTS:
        raise UnsupportedModelError(
            f"tensor {info.name!r} has type {info.ggml_type.name}, which hearth does not load"
        )
    block_size, type_size = GGML_QUANT_SIZES[info.ggml_type]
    byte_shape = (*info.shape[:-1], info.shape[-1] // block_size * type_size)
    blocks = raw.reshape(byte_shape)
    if keep_quantized:
        return GGUFQuantizedTensor(info.ggml_type, torch.from_numpy(blocks), info.shape)
    try:
        return _dequantize(blocks, info.ggml_type, info.shape, dtype)
    except NotImplementedError as exc:
        raise UnsupportedModelError(
            f"tensor {info.name!r} is quantized as {info.ggml_type.name}, which the installed "
            f"gguf package cannot de-quantize; re-quantize the model (e.g. Q4_K_M or Q8_0)"
        ) from exc
