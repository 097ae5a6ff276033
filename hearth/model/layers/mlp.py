"""The gated feed-forward block of every family: down(act(gate(x)) * up(x)), with SiLU
(Llama, Qwen, Mistral, Phi-3, DeepSeek) or GELU (Gemma). gate and up may be fused into one
`gate_up_proj` (rows gate, then up) by `fuse_gate_up`. Knows nothing of routing (moe.py)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hearth.model.layers.linear import make_linear
from hearth.model.layers.ops import REFERENCE, Ops


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name == "silu":
        return F.silu
    if name == "gelu_tanh":
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "gelu":
        return F.gelu
    raise ValueError(f"hidden_act {name!r} has no implementation")


class GatedMLP(nn.Module):
    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        act: str,
        bias: bool = False,
        ops: Ops = REFERENCE,
    ) -> None:
        super().__init__()
        self.ops = ops
        self.gate_proj = make_linear(hidden_size, intermediate_size, bias, ops)
        self.up_proj = make_linear(hidden_size, intermediate_size, bias, ops)
        self.down_proj = make_linear(intermediate_size, hidden_size, bias, ops)
        self.act = activation(act)
        self.silu = act == "silu"
        self.gate_up_proj: nn.Module | None = None
        self.intermediate_size = intermediate_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, hidden) -> (T, hidden)
        if self.gate_up_proj is not None:
            gate_up = self.gate_up_proj(x)
            if self.silu:
                return self.down_proj(self.ops.silu_mul(gate_up))
            gate, up = gate_up.split(self.intermediate_size, dim=-1)
            return self.down_proj(self.act(gate) * up)
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))

    def fuse_gate_up(self, gate_up_proj: nn.Module) -> None:
        """Replace gate/up_proj by one projection whose output rows are gate, then up."""
        self.gate_up_proj = gate_up_proj
        del self.gate_proj, self.up_proj
