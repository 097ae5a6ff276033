"""Verification of drafted tokens after the step's forward, and the KV rollback.

A decoding sequence of L tokens (the last one new) that carried k drafts d_0..d_{k-1} ran
k + 1 positions L-1 .. L+k-1 in one forward; their logits predict positions L .. L+k. The
step's ordinary sampling (LLMEngine._sample) has already drawn the token at L from the
first row. Round j (1..k) then goes on for the sequences whose token at L+j-1 came out
equal to d_{j-1} and that did not stop: it samples row j, through the same sampler, the
same grammar mask, the same stop checks. For a deterministic drafter this is exactly the
rejection rule (rejection.py), so greedy output is the non-speculative output token for
token and a seeded request draws what it would have drawn.

Afterwards the K/V of accepted drafts count as computed; the blocks past the sequence's
length go back to the pool (rejected drafts' K/V), and only full blocks of accepted tokens
enter the prefix cache. Knows nothing of the model."""

from __future__ import annotations

from collections.abc import Callable

import torch

from hearth.engine.block_manager import BlockManager
from hearth.engine.sequence import Sequence

SampleFn = Callable[[list[Sequence], torch.Tensor], list[str]]


def verify_drafts(
    seqs: list[Sequence],
    draft_logits: dict[int, torch.Tensor],
    sample: SampleFn,
    block_manager: BlockManager,
) -> tuple[list[str], dict[int, int]]:
    """seqs: those sampled this step; draft_logits: seq_id -> (k, V) logits after each
    draft. Returns (request ids that got tokens, seq_id -> drafts accepted)."""
    spec = [s for s in seqs if s.seq_id in draft_logits]
    accepted = {s.seq_id: 0 for s in spec}
    touched: list[str] = []
    live = spec
    for j in range(max((len(s.draft_token_ids) for s in spec), default=0)):
        live = [
            s
            for s in live
            if not s.is_finished
            and j < len(s.draft_token_ids)
            and s.token_ids[-1] == s.draft_token_ids[j]
        ]
        if not live:
            break
        for s in live:
            accepted[s.seq_id] += 1
        rows = torch.stack([draft_logits[s.seq_id][j] for s in live])  # (len(live), V)
        touched.extend(sample(live, rows))
    for s in spec:
        if s.is_finished:  # its blocks are already released
            continue
        s.num_computed_tokens += accepted[s.seq_id]
        block_manager.cache_full_blocks(s)
        block_manager.release_tail(s, len(s))
    return touched, accepted
