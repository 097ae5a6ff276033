"""The gated feed-forward block of every family: down(act(gate(x)) * up(x)), with SiLU
(Llama, Qwen, Mistral, Phi-3, DeepSeek) or GELU (Gemma). Knows nothing of routing (moe.py)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hearth.model.linear import make_linear


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name == "silu":
        return F.silu
    if name == "gelu_tanh":
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "gelu":
        return F.gelu
    raise ValueError(f"hidden_act {name!r} has no implementation")


class GatedMLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int, act: str, bias: bool = False):
        super().__init__()
        self.gate_proj = make_linear(hidden_size, intermediate_size, bias)
        self.up_proj = make_linear(hidden_size, intermediate_size, bias)
        self.down_proj = make_linear(intermediate_size, hidden_size, bias)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, hidden) -> (T, hidden)
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))
