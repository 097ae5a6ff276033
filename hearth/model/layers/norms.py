"""RMSNorm, the one normalisation of every supported family, with Gemma's (1 + w) variant,
and its weightless form (Llama 4's q/k "L2" norm). The arithmetic is Ops.rms_norm's (the
reference) or the backend's equal of it. Knows nothing of layers or files."""

from __future__ import annotations

import torch
from torch import nn

from hearth.model.layers.ops import REFERENCE, Ops


class RMSNorm(nn.Module):
    """x / rms(x) * w, computed in float32. unit_offset (Gemma): scale by (1 + w), applied
    before casting back (Gemma casts after the scale; Llama casts, then scales)."""

    def __init__(self, dim: int, eps: float, unit_offset: bool = False, ops: Ops = REFERENCE):
        super().__init__()
        self.ops = ops
        self.weight = nn.Parameter(torch.empty(dim), requires_grad=False)
        self.eps = eps
        self.unit_offset = unit_offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops.rms_norm(x, self.weight, self.eps, self.unit_offset)


def rms_normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x / rms(x) over the last dim, computed in float32, no weight (Llama 4 q/k norm)."""
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
