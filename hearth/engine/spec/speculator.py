"""Speculator: before each step, decides which decoding sequences carry drafted tokens
and how many; after it, learns from what was accepted and what the step cost.

It pays or it stops (issue 28): every sequence keeps an estimate of how often its drafts
are accepted (alpha, per drafted token); under the usual model a draft of k tokens then
yields alpha + alpha^2 + ... + alpha^k extra tokens. The step's cost for T tokens is
measured (`StepCosts`), not assumed, so drafts are added only while the expected tokens
per second of the whole step go up: on one stream a memory-bound step costs about the
same for 1 or 6 tokens, and drafts pay; in a large batch every extra token costs compute,
and none are added. A sequence whose alpha falls low drafts nothing, and tries again,
with one token, after PROBE_EVERY steps, then after twice as many each time a probe
finds it still off (up to MAX_PROBE_EVERY): a drafter that never pays (an early exit of
a model not trained for it) then costs almost nothing.

A drafter that runs a model (self-speculation, a draft model: model_drafter.py) costs
time of its own before the step: its seconds per drafted token are measured too, and a
sequence asks it for no more tokens than pay for themselves and their drafting.

Knows nothing of the model or tensors: the drafter proposes from token ids."""

from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from typing import Protocol

from hearth.engine.engine_config import MAX_SPECULATIVE_TOKENS, SPECULATIVE_MODES
from hearth.engine.sequence import Sequence
from hearth.engine.spec.ngram import NgramIndex, SharedNgrams

PRIOR_ALPHA = 0.6  # a fresh sequence's guess (n-gram matches in quoting text: ~0.7)
ALPHA_DECAY = 0.7  # weight of the old estimate in each update
OFF_BELOW = 0.15  # alpha under which a sequence stops drafting
PROBE_EVERY = 16  # steps between one-token probes of a sequence that stopped
MAX_PROBE_EVERY = 256  # ... doubling while the probes find it still not paying


@dataclass
class StepCosts:
    """Measured seconds of a step by its token count (an exponential moving average per
    count). A count never measured is estimated from the nearest measured one below it,
    so a draft is tried once and then judged by what it cost."""

    decay: float = 0.8
    _seconds: dict[int, float] = field(default_factory=dict)

    def record(self, num_tokens: int, seconds: float) -> None:
        old = self._seconds.get(num_tokens)
        self._seconds[num_tokens] = (
            seconds if old is None else self.decay * old + (1 - self.decay) * seconds
        )

    def estimate(self, num_tokens: int) -> float | None:
        if num_tokens in self._seconds:
            return self._seconds[num_tokens]
        below = [n for n in self._seconds if n < num_tokens]
        return self._seconds[max(below)] if below else None

    def upper_bound(self, num_tokens: int) -> float | None:
        """A step of num_tokens costs at most what the nearest larger measured one did."""
        above = [n for n in self._seconds if n > num_tokens]
        return self._seconds[min(above)] if above else None


class Drafter(Protocol):
    """One sequence's drafter: up to k tokens to follow `tokens` (which only grow). A
    drafter shared by every sequence may also have `propose_many([(tokens, k), ...])`,
    which the speculator then calls once per step (model_drafter.DraftRunner)."""

    def propose(self, tokens: list[int], k: int) -> list[int]: ...


@dataclass
class _SeqState:
    seq: Sequence
    drafter: Drafter
    alpha: float = PRIOR_ALPHA
    idle_steps: int = 0  # steps since it last drafted while switched off
    probe_every: int = PROBE_EVERY  # steps from one probe to the next while off


class Speculator:
    """mode: "ngram" drafts whenever a sequence has a match (up to num_speculative_tokens
    tokens); "auto" does so only where the measured costs say it pays, and so do "self"
    and "draft" (their drafter is given as new_drafter); "off" never."""

    def __init__(
        self,
        mode: str,
        num_speculative_tokens: int,
        new_drafter: Callable[[Sequence], Drafter] = lambda seq: NgramIndex(),
    ) -> None:
        if mode not in SPECULATIVE_MODES:
            raise ValueError(f"speculative must be one of {SPECULATIVE_MODES}, got {mode!r}")
        if not 1 <= num_speculative_tokens <= MAX_SPECULATIVE_TOKENS:
            raise ValueError(
                f"num_speculative_tokens must be in 1..{MAX_SPECULATIVE_TOKENS}, "
                f"got {num_speculative_tokens}"
            )
        self.mode = mode
        self.max_k = num_speculative_tokens
        self.costs = StepCosts()
        self.new_drafter = new_drafter
        # "ngram" drafts whatever matches; every other mode pays or stops
        self.always = mode == "ngram"
        # measured seconds per token the drafter proposed (EMA; None until it proposed)
        self.draft_seconds: float | None = None
        # what finished requests answered: drafts where a sequence's own text has no match
        self.shared = SharedNgrams()
        self._states: dict[int, _SeqState] = {}

    def _state(self, seq: Sequence) -> _SeqState:
        state = self._states.get(seq.seq_id)
        if state is None:
            state = self._states[seq.seq_id] = _SeqState(seq, self.new_drafter(seq))
        return state

    def propose(
        self, running: Seq[Sequence], limit: Callable[[Sequence], int], budget: int
    ) -> None:
        """Set `draft_token_ids` of the running sequences that are decoding. limit(seq):
        the most drafts seq may carry (its token budget and context minus one). budget:
        the step's token budget (a running prefill's chunk counts in the step's cost)."""
        for seq in running:
            seq.draft_token_ids = []  # a draft lives for one step
        live = {s.seq_id for s in running}
        for seq_id in [i for i in self._states if i not in live]:
            gone = self._states.pop(seq_id).seq  # finished, or preempted: it starts afresh
            if gone.finish_reason in ("stop", "length"):
                self.shared.add(gone.output_token_ids)
        decoding = [s for s in running if s.num_uncomputed_tokens == 1 and s.params.speculate]
        base = min(budget, sum(s.num_uncomputed_tokens for s in running))
        asks: list[tuple[_SeqState, int]] = []  # (sequence, tokens to draft for it)
        for seq in decoding:
            state = self._state(seq)
            k = min(self.max_k, limit(seq))
            if not self.always:
                # off while its drafts fail, or while drafting them costs more than they
                # save; a one-token probe now and then measures both again
                if state.alpha >= OFF_BELOW and k > 0:
                    k = self._worth_drafting(state.alpha, base, k)
                if state.alpha < OFF_BELOW or k == 0:
                    state.idle_steps += 1
                    if state.idle_steps < state.probe_every:
                        continue
                    state.idle_steps = 0
                    state.probe_every = min(2 * state.probe_every, MAX_PROBE_EVERY)
                    k = min(self.max_k, limit(seq), 1)
                else:
                    state.probe_every = PROBE_EVERY  # it pays again
            if k > 0:
                asks.append((state, k))
        candidates: list[tuple[float, Sequence, list[int]]] = []
        for (state, k), drafts in zip(asks, self._draft(asks), strict=True):
            if not drafts:
                drafts = self.shared.propose(state.seq.token_ids, k)
            if drafts:
                candidates.append((state.alpha, state.seq, drafts))
        if self.always:
            for _, seq, drafts in candidates:
                seq.draft_token_ids = drafts
            return
        self._choose(candidates, base)

    def _draft(self, asks: list[tuple[_SeqState, int]]) -> list[list[int]]:
        """Each sequence's drafts, the drafter's cost per token measured. A drafter that
        runs a model drafts for all of its sequences at once (`propose_many`: one batch
        per draft step, not one forward per sequence and token)."""
        if not asks:
            return []
        start = time.perf_counter()
        drafters = {id(state.drafter): state.drafter for state, _ in asks}
        many = getattr(next(iter(drafters.values())), "propose_many", None)
        if len(drafters) == 1 and many is not None:
            out: list[list[int]] = many([(state.seq.token_ids, k) for state, k in asks])
        else:
            out = [state.drafter.propose(state.seq.token_ids, k) for state, k in asks]
        per_token = (time.perf_counter() - start) / sum(k for _, k in asks)
        old = self.draft_seconds
        self.draft_seconds = per_token if old is None else 0.8 * old + 0.2 * per_token
        return out

    def _worth_drafting(self, alpha: float, base: int, k: int) -> int:
        """How many tokens (0..k) to ask the drafter for: the count whose expected tokens
        per second, drafting included, are the highest; 0 when none beats not drafting.
        Before the costs are measured, k (then they are). A cheap drafter (n-gram
        lookup) keeps k wherever the drafted tokens themselves pay."""
        # a sequence that always drafted never ran a step of `base` tokens alone: judge
        # by a larger step's cost then (what not drafting costs at most)
        now = self.costs.estimate(base) or self.costs.upper_bound(base)
        per_token = self.draft_seconds
        if now is None or per_token is None:
            return k
        best, best_rate, gain = 0, base / now, 0.0
        for j in range(1, k + 1):
            gain += alpha**j
            then = self.costs.estimate(base + j) or now
            rate = (base + gain) / (then + j * per_token)
            if rate > best_rate:
                best, best_rate = j, rate
        return best

    def _choose(self, candidates: list[tuple[float, Sequence, list[int]]], base: int) -> None:
        """Add drafted tokens, likeliest first (the i-th token of a sequence is accepted
        with probability alpha^i), while the step's expected tokens per second rise."""
        marginal = sorted(
            (
                (alpha ** (i + 1), seq, tok)
                for alpha, seq, drafts in candidates
                for i, tok in enumerate(drafts)
            ),
            key=lambda m: -m[0],
        )
        expected = float(base)
        for added, (gain, seq, tok) in enumerate(marginal):
            now = self.costs.estimate(base + added)
            then = self.costs.estimate(base + added + 1)
            if now is not None and then is not None and (expected + gain) / then <= expected / now:
                break
            seq.draft_token_ids.append(tok)  # in order: a sequence's i-th before its i+1-th
            expected += gain

    def observe_step(self, num_tokens: int, seconds: float) -> None:
        self.costs.record(num_tokens, seconds)

    def observe_verified(self, seq: Sequence, num_drafted: int, num_accepted: int) -> None:
        if num_drafted < 1:
            return
        state = self._state(seq)
        rate = num_accepted / num_drafted
        state.alpha = ALPHA_DECAY * state.alpha + (1 - ALPHA_DECAY) * rate
