"""The one way the decoder makes a projection. Every weight matrix of the network (q/k/v/o,
gate/up/down, experts, LM head) goes through `make_linear`, so quantized or LoRA layers
(later issues) replace this factory without touching the decoder. Knows nothing of files."""

from __future__ import annotations

import torch
from torch import nn

from hearth.model.layers.ops import REFERENCE, Ops


class Linear(nn.Module):
    """y = x @ weight.T (+ bias). weight: (out_features, in_features), HF layout.

    Parameters are created uninitialised: `model/build.py` assigns the checkpoint's tensors,
    so random initialisation would only cost time."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = False, ops: Ops = REFERENCE
    ) -> None:
        super().__init__()
        self.ops = ops
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out_features), requires_grad=False) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, bias={self.bias is not None}"


def make_linear(
    in_features: int, out_features: int, bias: bool = False, ops: Ops = REFERENCE
) -> nn.Module:
    """The projection factory: a plain dense Linear today."""
    return Linear(in_features, out_features, bias, ops)
