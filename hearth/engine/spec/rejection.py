"""The acceptance rule of speculative sampling (Leviathan et al. 2023, Chen et al. 2023;
vLLM's rejection_sampler.py): a token d drafted with probability q(d) is kept with
probability min(1, p(d) / q(d)) under the target's distribution p; when it is not, the
token is drawn from norm(max(0, p - q)). The emitted token is then distributed exactly as
p, whatever q was.

The drafters built so far are deterministic (n-gram lookup: q is one-hot on d). Then the
rule reduces to "draw x from p; keep d if x == d, else emit x": P(keep) = p(d), and on a
rejection norm(max(0, p - onehot(d))) is p without d. That is what LLMEngine does, through
its own sampler (penalties, top-k/top-p, grammar masks, a seeded request's generator):
each verified position is sampled exactly as a decode step would sample it.
`accept_or_resample` is the general rule, for a drafter that samples (a draft model at a
temperature). Knows nothing of the engine."""

from __future__ import annotations

import torch


def accept_or_resample(
    p: torch.Tensor, q: torch.Tensor, draft: int, generator: torch.Generator | None = None
) -> tuple[int, bool]:
    """p, q: (V,) probabilities of the target and the drafter at one position; draft: the
    token the drafter drew from q. Returns (token, accepted)."""
    u = torch.rand((), generator=generator, dtype=torch.float64)
    p_d, q_d = float(p[draft]), float(q[draft])
    if q_d > 0 and float(u) * q_d < p_d:  # u < p/q without dividing by a tiny q
        return draft, True
    residual = (p - q).clamp_(min=0)
    total = float(residual.sum())
    if total <= 0:  # p == q: a rejection cannot happen; only rounding gets here
        residual, total = p.clone(), float(p.sum())
    token = int(torch.multinomial(residual / total, 1, generator=generator))
    return token, False
