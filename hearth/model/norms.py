"""RMSNorm, the one normalisation of every supported family, with Gemma's (1 + w) variant,
and its weightless form (Llama 4's q/k "L2" norm). Knows nothing of layers or files."""

from __future__ import annotations

import torch
from torch import nn

from hearth.model import decode_ops


class RMSNorm(nn.Module):
    """x / rms(x) * w, computed in float32. unit_offset (Gemma): scale by (1 + w), applied
    before casting back (Gemma casts after the scale; Llama casts, then scales)."""

    def __init__(self, dim: int, eps: float, unit_offset: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim), requires_grad=False)
        self.eps = eps
        self.unit_offset = unit_offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if decode_ops.applies(x, self.weight):  # one C pass, same roundings
            return decode_ops.rms_norm(x, self.weight, self.eps, self.unit_offset)
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.unit_offset:
            return (normed * (1.0 + self.weight.float())).to(x.dtype)
        return self.weight * normed.to(x.dtype)


def rms_normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x / rms(x) over the last dim, computed in float32, no weight (Llama 4 q/k norm)."""
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
