"""The encoder's projections (layers/encoder.py `EncoderOps`) on oneDNN's fused linear, the
op torch's inductor emits for CPU linears: the bias, the GELU and the residual add are the
matmul's post-ops, so none of them is a separate pass over the (T, N) output. Measured on
the 2-core AVX-512 BF16 machine, a (2048, 384) x (384, 1536) linear + GELU: 1.0 s against
1.7 s (float32, 10 calls) and 0.6 s against 1.1 s (bfloat16); see
docs/decisions/embed-speed.md. Outside autograd and on the CPU only: anything else takes the
reference."""

from __future__ import annotations

import torch

from hearth.model.layers.encoder import EncoderOps


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
    name = "onednn"

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
        if not _fits(x, weight) or residual.dtype != x.dtype:
            return super().linear_add(x, weight, bias, residual)
        return torch.ops.mkldnn._linear_pointwise.binary(
            x.contiguous(), residual.contiguous(), weight, bias, "add"
        )


def encoder_ops() -> EncoderOps:
    """The fastest EncoderOps this PyTorch offers (chosen once, by the embedder's loader)."""
    return OneDnnEncoderOps() if available() else EncoderOps()
