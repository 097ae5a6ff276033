"""The encoder's projections (layers/encoder.py `EncoderOps`) on oneDNN's fused linear, the
op torch's inductor emits for CPU linears: the bias, the GELU and the residual add are the
matmul's post-ops, so none of them is a separate pass over the (T, N) output. Measured on
the 2-core AVX-512 BF16 machine, a (2048, 384) x (384, 1536) linear + GELU: 1.0 s against
1.7 s (float32, 10 calls) and 0.6 s against 1.1 s (bfloat16); see
docs/decisions/embed-speed.md. With bfloat16 projections and a float32 residual stream the
residual add and the post-norm run in one C pass (encoder_norm.c) that also writes the next
projection's bfloat16 input (docs/decisions/embed-bf16-accuracy.md). Outside autograd and
on the CPU only: anything else takes the reference."""

from __future__ import annotations

import ctypes
import logging

import torch
from torch import nn

from hearth.model.cpu import native_build
from hearth.model.layers.encoder import EncoderOps

log = logging.getLogger(__name__)


def _setup(lib: ctypes.CDLL) -> None:
    pointer, int32, int64, float32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
    lib.hearth_add_layer_norm.restype = None
    lib.hearth_add_layer_norm.argtypes = [pointer] * 4 + [int64, int32, float32, int32]


NORM_KERNEL = native_build.Kernel(
    "encoder_norm", log, "the encoder's residual add and norm use plain torch", _setup
)


def available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _fits(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == weight.dtype
        and x.dtype in (torch.float32, torch.bfloat16)
        and x.dim() == 2
        and x.shape[0] > 0
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
    )


class OneDnnEncoderOps(EncoderOps):
    """norm_kernel: whether encoder_norm.c is loaded (chosen once, by `encoder_ops`)."""

    name = "onednn"

    def __init__(self, norm_kernel: bool = False) -> None:
        self.norm_kernel = norm_kernel

    def linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if not _fits(x, weight):
            return super().linear(x, weight, bias)
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "none", [], "")

    def linear_gelu(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, approximate: str
    ) -> torch.Tensor:
        if not _fits(x, weight):
            return super().linear_gelu(x, weight, bias, approximate)
        return torch.ops.mkldnn._linear_pointwise(
            x.contiguous(), weight, bias, "gelu", [], approximate
        )

    def linear_add(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor
    ) -> torch.Tensor:
        if not _fits(x, weight):
            return super().linear_add(x, weight, bias, residual)
        if residual.dtype != x.dtype:  # a wider residual stream: the add in its dtype
            return residual + self.linear(x, weight, bias)
        return torch.ops.mkldnn._linear_pointwise.binary(
            x.contiguous(), residual.contiguous(), weight, bias, "add"
        )

    def linear_add_norm(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        residual: torch.Tensor,
        norm: nn.LayerNorm,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not (
            self.norm_kernel
            and _fits(x, weight)
            and x.dtype == torch.bfloat16
            and residual.dtype == torch.float32
            and residual.is_contiguous()
            and norm.weight.dtype == norm.bias.dtype == torch.float32
            and not (torch.is_grad_enabled() and residual.requires_grad)
        ):
            return super().linear_add_norm(x, weight, bias, residual, norm)
        out = self.linear(x, weight, bias).contiguous()  # (T, N) bfloat16
        if out.shape != residual.shape:
            raise ValueError(f"projection output {tuple(out.shape)} != {tuple(residual.shape)}")
        lib = NORM_KERNEL.lib
        assert lib is not None
        rows, dim = residual.shape
        lib.hearth_add_layer_norm(
            residual.data_ptr(),
            out.data_ptr(),
            norm.weight.data_ptr(),
            norm.bias.data_ptr(),
            rows,
            dim,
            norm.eps,
            torch.get_num_threads(),
        )
        return residual, out  # both written in place


def encoder_ops() -> EncoderOps:
    """The fastest EncoderOps this PyTorch offers (chosen once, by the embedder's loader)."""
    if not available():
        return EncoderOps()
    return OneDnnEncoderOps(norm_kernel=NORM_KERNEL.load() is not None)
