"""Scheduler: decides, every step, which sequences run and how many tokens each computes.

One step mixes decodes (one token each) with prefills (continuous batching); a prompt
longer than what is left of the step's token budget is split over steps (chunked prefill).
Running sequences go first, oldest first; waiting ones are admitted in arrival order while
budget, sequence slots and KV blocks last, except that one whose prompt opens with blocks
a running prefill is still computing waits (keeping its place) until they are cached, and
then shares them (SGLang's cache-aware scheduling, in its simplest form: a hundred
requests over one few-shot prefix, sent at once, compute it once, not in every request
admitted before the first finished it). When a running sequence needs a block and the
pool is empty, the newest running sequence is preempted: its blocks are released and it
goes back to the front of the queue, to be recomputed (its prefix often still cached).

Knows nothing of tensors or text."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from hearth.engine.block_manager import BlockManager
from hearth.engine.sequence import Sequence, SequenceStatus


@dataclass(frozen=True)
class SchedulerConfig:
    """max_num_batched_tokens: tokens computed per step (the chunked-prefill budget).
    max_num_seqs: sequences running at once. max_loras: distinct LoRA adapters running at
    once (the model's adapter slots); a sequence of one more waits, keeping its place."""

    max_num_batched_tokens: int = 512
    max_num_seqs: int = 64
    max_loras: int = 4

    def __post_init__(self) -> None:
        if self.max_num_batched_tokens < 1:
            raise ValueError(
                f"max_num_batched_tokens must be >= 1, got {self.max_num_batched_tokens}"
            )
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")


@dataclass
class SchedulerOutput:
    """What to run this step: `seqs[i]` computes `num_tokens[i]` tokens starting at its
    `num_computed_tokens`."""

    seqs: list[Sequence] = field(default_factory=list)
    num_tokens: list[int] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return sum(self.num_tokens)

    def __bool__(self) -> bool:
        return bool(self.seqs)


class Scheduler:
    def __init__(self, config: SchedulerConfig, block_manager: BlockManager) -> None:
        self.config = config
        self.block_manager = block_manager
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0  # lifetime counter, for metrics

    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def finish(self, seq: Sequence, reason: str) -> None:
        """Take seq out of the queues and release its blocks (abort, stop, length, error)."""
        if seq.status is SequenceStatus.FINISHED:
            return
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
        else:
            self.waiting.remove(seq)
        self.block_manager.free(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        seq.draft_token_ids.clear()
        self.block_manager.free(seq)
        seq.status = SequenceStatus.WAITING
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(seq)

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.config.max_num_batched_tokens
        bm = self.block_manager

        # 1. running sequences (decodes and unfinished chunked prefills), oldest first
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            num_new = min(seq.num_uncomputed_tokens, budget)
            while not bm.allocate(seq, num_new):
                victim = self.running[-1]
                self._preempt(victim)
                out.preempted.append(victim)
                if victim is seq:
                    break
            else:
                out.seqs.append(seq)
                out.num_tokens.append(num_new)
                budget -= num_new
                i += 1
                continue
            break  # seq preempted itself: nothing older is left to free
        budget = self._add_drafts(out, budget)

        # 2. waiting sequences, in arrival order (preempted ones are at the front, but not
        # re-admitted in the step that preempted them: the pool is short right now)
        if out.preempted:
            return out
        skipped: list[Sequence] = []
        # prompt blocks running prefills are computing: a waiting sequence whose prompt
        # opens with them waits until they are cached instead of computing them again
        # (many requests over one few-shot prefix, all sent at once)
        in_flight = bm.blocks_in_flight(self.running) if self.waiting else set()
        loras = {s.lora for s in self.running if s.lora is not None}
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting[0]
            lora_full = seq.lora not in loras and len(loras) >= self.config.max_loras
            if (
                not seq.is_ready()
                or bm.waits_for_prefix(seq, in_flight)
                or (seq.lora is not None and lora_full)
            ):
                skipped.append(self.waiting.popleft())
                continue
            bm.allocate_prefix(seq)
            num_new = min(seq.num_uncomputed_tokens, budget)
            if not bm.allocate(seq, num_new):
                bm.free(seq)
                break
            self.waiting.popleft()
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            out.seqs.append(seq)
            out.num_tokens.append(num_new)
            budget -= num_new
            in_flight |= bm.blocks_in_flight([seq])
            if seq.lora is not None:
                loras.add(seq.lora)
        # not-ready sequences keep their place at the front
        self.waiting.extendleft(reversed(skipped))
        return out

    def _add_drafts(self, out: SchedulerOutput, budget: int) -> int:
        """Speculated tokens (engine/spec/) ride on the scheduled decodes only where the
        budget and the pool have room once every running sequence has its own tokens: a
        draft never costs a preemption, its own sequence's or another's (drafts placed
        first once took the blocks younger sequences needed to decode, and the preempted
        ones recomputed their prompts). Returns the budget left."""
        bm = self.block_manager
        scheduled = set(map(id, out.seqs))
        for seq in self.running:
            if id(seq) not in scheduled or out.preempted:
                seq.draft_token_ids.clear()
        for index, (seq, num_new) in enumerate(zip(out.seqs, out.num_tokens, strict=True)):
            drafts = seq.draft_token_ids
            if not drafts:
                continue
            room = len(seq.block_table) + bm.num_free_blocks
            fits = room * bm.block_size - seq.num_computed_tokens - num_new
            extra = max(0, min(len(drafts), budget, fits))
            del drafts[extra:]
            if extra and bm.allocate(seq, num_new + extra):
                out.num_tokens[index] += extra
                budget -= extra
            else:
                drafts.clear()
        return budget

    def postprocess(self, out: SchedulerOutput) -> None:
        """After the model ran: the scheduled tokens are now in the cache."""
        for seq, n in zip(out.seqs, out.num_tokens, strict=True):
            # speculated tokens count once verified (LLMEngine), not here
            seq.num_computed_tokens += n - len(seq.draft_token_ids)
            self.block_manager.cache_full_blocks(seq)
