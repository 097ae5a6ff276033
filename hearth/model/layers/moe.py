"""Sparse mixture-of-experts MLP: a router picks num_experts_per_tok experts per token
(softmax top-k for Mixtral/Qwen/DeepSeek-V2, optionally within the best expert groups;
sigmoid scores with a choice-only bias for DeepSeek-V3 and Llama 4), the experts' outputs are
summed with the routing weights (Llama 4 weights the experts' inputs instead), plus an
always-on shared expert (Qwen2-MoE, gated; DeepSeek, Llama 4).
Knows nothing of attention or files."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hearth.model.layers.linear import make_linear
from hearth.model.layers.mlp import GatedMLP
from hearth.model.layers.ops import REFERENCE, Ops
from hearth.weights.config import MoEConfig


class Router(nn.Module):
    """`gate` in HF checkpoints: weight (num_experts, hidden) and, for DeepSeek-V3,
    e_score_correction_bias (num_experts,). Scores are computed in float32 (as DeepSeek
    and transformers do) so routing does not flip with the activation dtype."""

    def __init__(self, moe: MoEConfig, hidden_size: int) -> None:
        super().__init__()
        self.moe = moe
        self.weight = nn.Parameter(torch.empty(moe.num_experts, hidden_size), requires_grad=False)
        self.e_score_correction_bias = (
            nn.Parameter(torch.empty(moe.num_experts), requires_grad=False)
            if moe.score_correction_bias
            else None
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (T, hidden) -> weights (T, k) float32, expert ids (T, k)."""
        moe = self.moe
        logits = F.linear(x.float(), self.weight.float())  # (T, E)
        scores = logits.sigmoid() if moe.router_scores == "sigmoid" else logits.softmax(dim=-1)
        choice = scores
        if self.e_score_correction_bias is not None:
            choice = scores + self.e_score_correction_bias.float()
        if moe.num_groups > 1:
            grouped = choice.view(-1, moe.num_groups, moe.num_experts // moe.num_groups)
            if moe.group_score == "top2_sum":
                group_scores = grouped.topk(2, dim=-1).values.sum(dim=-1)
            else:
                group_scores = grouped.max(dim=-1).values
            best = group_scores.topk(moe.topk_groups, dim=-1).indices  # (T, topk_groups)
            keep = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, best, True)
            keep = keep[:, :, None].expand_as(grouped).reshape(choice.shape)
            # V3 masks with -inf, V2 with 0; both leave only kept experts in the top-k
            fill = float("-inf") if moe.router_scores == "sigmoid" else 0.0
            choice = choice.masked_fill(~keep, fill)
        ids = choice.topk(moe.num_experts_per_tok, dim=-1).indices  # (T, k)
        weights = scores.gather(1, ids)
        if moe.norm_topk_prob:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        return weights * moe.routed_scaling_factor, ids


class SparseMoE(nn.Module):
    def __init__(
        self, moe: MoEConfig, hidden_size: int, act: str, bias: bool = False, ops: Ops = REFERENCE
    ) -> None:
        super().__init__()
        self.gate = Router(moe, hidden_size)
        self.scale_input = moe.scale_expert_input
        self.experts = nn.ModuleList(
            GatedMLP(hidden_size, moe.intermediate_size, act, bias, ops)
            for _ in range(moe.num_experts)
        )
        # attribute names follow the checkpoints: Qwen2-MoE `shared_expert` (+ its gate),
        # DeepSeek `shared_experts` (build.py maps Llama 4's ungated one here)
        self.shared_expert: nn.Module | None = None
        self.shared_experts: nn.Module | None = None
        self.shared_expert_gate: nn.Module | None = None
        if moe.shared_intermediate_size and moe.shared_expert_gate:
            self.shared_expert = GatedMLP(hidden_size, moe.shared_intermediate_size, act, bias, ops)
            self.shared_expert_gate = make_linear(hidden_size, 1, ops=ops)
        elif moe.shared_intermediate_size:
            self.shared_experts = GatedMLP(
                hidden_size, moe.shared_intermediate_size, act, bias, ops
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, hidden) -> (T, hidden)
        weights, ids = self.gate(x)
        out = torch.zeros_like(x)
        for expert in ids.unique().tolist():  # only experts some token picked, in order
            token, slot = torch.where(ids == expert)
            w = weights[token, slot, None].to(x.dtype)  # (n, 1)
            if self.scale_input:
                y = self.experts[expert](x[token] * w)
            else:
                y = self.experts[expert](x[token]) * w
            out.index_add_(0, token, y)
        if self.shared_expert is not None and self.shared_expert_gate is not None:
            out = out + torch.sigmoid(self.shared_expert_gate(x)) * self.shared_expert(x)
        elif self.shared_experts is not None:
            out = out + self.shared_experts(x)
        return out
