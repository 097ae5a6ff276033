"""Cross-entropy through the LM head without a (tokens x vocab) float32 logits tensor and
without computing the logits twice: `linear_cross_entropy` runs the head and the loss chunk
by chunk, and in the same pass works out each chunk's gradient with respect to the hidden
states (softmax - one-hot, through the head's weight), which it keeps for backward. So the
head's big matmul runs twice per step (logits, gradient of the input) instead of three
times (logits, logits recomputed in backward, gradient), and at most `chunk` rows of logits
exist at a time. Liger-Kernel's fused linear cross-entropy does the same on GPUs.

The head's weight is frozen here (LoRA, QLoRA, DPO); a full fine-tune, whose head trains,
takes the checkpointed road in forward.py. Soft-capped logits (Gemma 2) differentiate
through the cap. Knows nothing of models beyond a weight matrix."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["linear_cross_entropy"]


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        softcap: float | None,
        chunk: int,
    ) -> torch.Tensor:
        assert not ctx.needs_input_grad[1], "the head's weight must be frozen"
        need_hidden = ctx.needs_input_grad[0]
        losses = torch.empty(hidden.shape[0], dtype=torch.float32)
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        for start in range(0, hidden.shape[0], chunk):
            h = hidden[start : start + chunk]  # (n, H)
            t = targets[start : start + chunk, None]  # (n, 1)
            logits = (h @ weight.t()).float()  # (n, V)
            if softcap is not None:
                capped = torch.tanh(logits / softcap)
                logits = capped * softcap
            # one fused softmax pass gives both the loss (-log p of the target) and the
            # gradient (p - one_hot); logsumexp and exp separately measured 1.7x the time
            probs = torch.softmax(logits, dim=-1)  # (n, V)
            target_probs = probs.gather(1, t).squeeze(1)
            losses[start : start + chunk] = _neg_log(target_probs, logits, t)
            if grad_hidden is None:
                continue
            del logits
            grad = probs.scatter_add_(1, t, torch.full_like(target_probs[:, None], -1.0))
            if softcap is not None:
                grad.mul_(1.0 - capped.square_())
            grad_hidden[start : start + chunk] = grad.to(weight.dtype) @ weight
        ctx.save_for_backward(grad_hidden)
        return losses

    @staticmethod
    def backward(ctx: Any, grad_losses: torch.Tensor) -> tuple[Any, ...]:
        (grad_hidden,) = ctx.saved_tensors
        # (N, H) rows of d loss_i / d hidden_i, each scaled by the caller's d out / d loss_i
        grad = (grad_hidden.float() * grad_losses.float()[:, None]).to(grad_hidden.dtype)
        return grad, None, None, None, None


def _neg_log(
    target_probs: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """-log p of each row's target, (n,) float32; a probability that underflowed (a target
    ~87 nats below the best logit) takes logsumexp - logit from its row instead."""
    out = -torch.log(target_probs)
    tiny = (target_probs < torch.finfo(torch.float32).tiny).nonzero().squeeze(1)
    if tiny.numel():
        rows = logits.index_select(0, tiny)
        exact = torch.logsumexp(rows, -1) - rows.gather(1, targets.index_select(0, tiny))[:, 0]
        out.index_copy_(0, tiny, exact)
    return out


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    softcap: float | None = None,
    chunk: int = 1024,
) -> torch.Tensor:
    """Per-row cross-entropy of logits = hidden @ weight.T (soft-capped when `softcap`):
    hidden (N, H), weight (V, H), targets (N,) int64 -> (N,) float32. The logits are float32
    (as Decoder.compute_logits gives them), `chunk` rows at a time."""
    return _LinearCrossEntropy.apply(hidden, weight, targets, softcap, chunk)
