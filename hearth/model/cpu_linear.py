"""float32 projections on the CPU through oneDNN (`torch.ops.mkldnn._linear_pointwise`, the
op torch's own inductor emits for CPU linears) instead of `F.linear`, which on torch's CPU
wheel is MKL's SGEMM. On the 2-core AVX-512 machine the same fp32 products run 1.2-1.7x
faster (2048 x 576 @ 576 x 3072: 45.5 -> 36.2 ms, about 200 GFLOP/s, the cores' FMA peak)
and the 49,152-row LM head of a few rows 2x faster; results differ from MKL's by the
summation order only (|diff| ~1e-4 on unit-normal 576-long products). The weight is passed
as it is (oneDNN reorders it per call: a copy of the weight, small beside the product), so
no second, packed copy of the weights stays resident.

Only where it is a pure inference product: float32 CPU tensors, no autograd (training and
LoRA take F.linear), outside torch.compile traces (inductor picks its own kernels).
`HEARTH_ONEDNN_LINEAR=0` switches it off. Knows nothing of layers or models."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from hearth.model import dense_kernel

ENV = "HEARTH_ONEDNN_LINEAR"


def _op_available() -> bool:
    if os.environ.get(ENV, "1") == "0" or not torch.backends.mkldnn.is_available():
        return False
    return hasattr(torch.ops.mkldnn, "_linear_pointwise")


_AVAILABLE = _op_available()


def applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether x @ weight.T can go to oneDNN here and now."""
    return (
        _AVAILABLE
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.device.type == "cpu"
        and weight.device.type == "cpu"
        and x.dim() >= 2
        and x.numel() > 0
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and not torch.compiler.is_compiling()
    )


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (..., K) @ weight (N, K).T (+ bias (N,)) -> (..., N), float32; F.linear where
    `applies` says no."""
    if not applies(x, weight):
        return F.linear(x, weight, bias)
    rows = x.reshape(-1, x.shape[-1]).contiguous()  # no copy when it already is
    if rows.shape[0] <= dense_kernel.MAX_ROWS and dense_kernel.available():
        # a decode step's few rows: a weight stream, read in place (dense_kernel)
        out = dense_kernel.matmul(rows, weight, bias)
    else:
        out = torch.ops.mkldnn._linear_pointwise(rows, weight.contiguous(), bias, "none", [], "")
    return out.reshape(*x.shape[:-1], weight.shape[0])
