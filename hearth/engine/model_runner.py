"""ModelRunner: lays one scheduled step out flat (token ids, positions, slot mapping, block
tables, context lengths → AttentionMetadata), runs the decoder over the paged KV cache and
returns the logits the step needs: the last token of every sequence that samples, and
every position whose next token is a prompt token for sequences asking prompt_logprobs,
and every speculated token of a decode (engine/spec/: k drafts verified in one forward).

Knows nothing of sampling, stop conditions or text; the decoder is only seen through
`forward(input_ids, positions, meta, kv_caches)` and `compute_logits(hidden)`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from hearth.engine.lora_adapters import LoraAdapters
from hearth.engine.scheduler import SchedulerOutput
from hearth.engine.sequence import Sequence
from hearth.engine.threads import (
    DEFAULT_MIN_TOKENS_PER_THREAD,
    StepThreads,
    dedicated_cpu,
    openmp_workers_sleep,
)
from hearth.model.batch import AttentionMetadata


class DecoderLike(Protocol):
    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttentionMetadata,
        kv_caches: Any,
    ) -> torch.Tensor: ...

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor: ...


@dataclass
class StepInputs:
    input_ids: torch.Tensor  # (T,) int64
    positions: torch.Tensor  # (T,) int64
    meta: AttentionMetadata
    sample_seqs: list[Sequence]  # sequences that sample a token after this step
    sample_rows: list[int]  # their last token's index in the flat layout
    # seq -> (flat indices, prompt positions they predict the token after)
    prompt_rows: dict[int, tuple[list[int], list[int]]] = field(default_factory=dict)
    # seq_id -> flat indices of its speculated tokens (engine/spec/): their logits verify
    draft_rows: dict[int, list[int]] = field(default_factory=dict)


@dataclass
class RunnerOutput:
    sample_seqs: list[Sequence]
    logits: torch.Tensor  # (len(sample_seqs), V) fp32
    # seq_id -> (positions p, logits (L, V) predicting prompt token p + 1)
    prompt_logits: dict[int, tuple[list[int], torch.Tensor]]
    # seq_id -> (k, V) fp32: the logits after each of its k speculated tokens
    draft_logits: dict[int, torch.Tensor] = field(default_factory=dict)


def prepare_inputs(
    batch: SchedulerOutput, block_size: int, lora_slots: dict[str, int] | None = None
) -> StepInputs:
    """Flat layout of a step: each sequence contributes tokens
    [num_computed_tokens, num_computed_tokens + n). lora_slots: adapter name -> slot of the
    step's adapters (every token carries its sequence's slot, -1 for the base)."""
    ids: list[int] = []
    pos: list[int] = []
    slots: list[int] = []
    context_lens: list[int] = []
    sample_seqs: list[Sequence] = []
    sample_rows: list[int] = []
    token_slots: list[int] = []
    prompt_rows: dict[int, tuple[list[int], list[int]]] = {}
    draft_rows: dict[int, list[int]] = {}
    max_blocks = max(len(s.block_table) for s in batch.seqs)
    query_lens: list[int] = []
    table_rows: list[int] = []  # which sequence's block table each query group reads
    for i, (seq, n) in enumerate(zip(batch.seqs, batch.num_tokens, strict=True)):
        start = seq.num_computed_tokens
        end = start + n
        drafts = seq.draft_token_ids  # speculated tokens after the sequence's last one
        tokens = seq.token_ids + drafts if drafts else seq.token_ids
        assert end <= len(tokens) and seq.num_blocks_for(end) <= len(seq.block_table)
        offset = len(ids)
        ids.extend(tokens[start:end])
        if lora_slots:
            token_slots.extend([-1 if seq.lora is None else lora_slots[seq.lora]] * n)
        pos.extend(range(start, end))
        table = seq.block_table
        slots.extend(
            table[p // block_size] * block_size + p % block_size for p in range(start, end)
        )
        if drafts and end == len(tokens):
            # verification: each position is a one-token query over the context up to it
            # (what a decode step of it would attend), so the step stays on the decode road
            query_lens.extend([1] * n)
            context_lens.extend(range(start + 1, end + 1))
            table_rows.extend([i] * n)
        else:
            query_lens.append(n)
            context_lens.append(end)
            table_rows.append(i)
        if end == len(tokens):
            sample_seqs.append(seq)
            sample_rows.append(offset + n - 1 - len(drafts))
            if drafts:
                draft_rows[seq.seq_id] = list(range(offset + n - len(drafts), offset + n))
        if seq.params.prompt_logprobs is not None:
            # position p predicts prompt token p + 1; entries 0..len-1 are already known
            first = max(start, len(seq.prompt_logprobs) - 1)
            last = min(end, seq.num_prompt_tokens - 1)
            if first < last:
                positions = list(range(first, last))
                prompt_rows[seq.seq_id] = ([offset + p - start for p in positions], positions)
    tables = torch.full((len(batch.seqs), max_blocks), -1, dtype=torch.int32)
    for i, seq in enumerate(batch.seqs):
        tables[i, : len(seq.block_table)] = torch.tensor(seq.block_table, dtype=torch.int32)
    if len(table_rows) > len(batch.seqs):
        tables = tables[torch.tensor(table_rows)]
    meta = AttentionMetadata(
        query_lens=query_lens,
        context_lens=torch.tensor(context_lens, dtype=torch.int32),
        slot_mapping=torch.tensor(slots, dtype=torch.int64),
        block_tables=tables,
        block_size=block_size,
        lora_slots=torch.tensor(token_slots, dtype=torch.int64) if lora_slots else None,
    )
    return StepInputs(
        input_ids=torch.tensor(ids, dtype=torch.int64),
        positions=torch.tensor(pos, dtype=torch.int64),
        meta=meta,
        sample_seqs=sample_seqs,
        sample_rows=sample_rows,
        prompt_rows=prompt_rows,
        draft_rows=draft_rows,
    )


class ModelRunner:
    """threads: how many CPU threads each step runs on; None = up to the torch thread
    count set when the runner is built (hearth.engine.threads says why small steps get
    one). The runner then owns torch's thread count: it sets it before every step."""

    def __init__(
        self,
        model: DecoderLike,
        kv_caches: Any,
        block_size: int,
        threads: StepThreads | None = None,
    ) -> None:
        self.model = model
        self.kv_caches = kv_caches
        self.block_size = block_size
        if threads is None:
            rule = 0 if dedicated_cpu() else DEFAULT_MIN_TOKENS_PER_THREAD
            threads = StepThreads(torch.get_num_threads(), rule)
        self.threads = threads
        self.adapters: LoraAdapters | None = None  # the engine's, once an adapter is added
        # the backend's kernels share the cores through their own pool unless the cores
        # are hearth's alone, or OpenMP's workers spin anyway (CpuBackend.set_threads); a
        # model without a backend (a test's stand-in) has no kernels to tell
        backend = getattr(model, "ops", None)
        if backend is not None:
            backend.set_threads(
                None if dedicated_cpu() else threads.max_threads, pooled=openmp_workers_sleep()
            )

    @torch.inference_mode()
    def run(self, batch: SchedulerOutput) -> RunnerOutput:
        slots = None
        if self.adapters is not None:
            slots = self.adapters.activate({s.lora for s in batch.seqs if s.lora is not None})
        step = prepare_inputs(batch, self.block_size, slots)
        wanted = self.threads.for_step(len(step.input_ids))
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)
        hidden = self.model.forward(step.input_ids, step.positions, step.meta, self.kv_caches)
        # (T, H): only the rows that need logits go through the LM head
        rows = list(step.sample_rows)
        for flat, _ in step.prompt_rows.values():
            rows.extend(flat)
        for flat in step.draft_rows.values():
            rows.extend(flat)
        if not rows:
            empty = torch.empty(0, 0, dtype=torch.float32)
            return RunnerOutput([], empty, {})
        logits = self.model.compute_logits(hidden[torch.tensor(rows, dtype=torch.long)]).float()
        num_sample = len(step.sample_rows)
        prompt_logits: dict[int, tuple[list[int], torch.Tensor]] = {}
        at = num_sample
        for seq_id, (flat, positions) in step.prompt_rows.items():
            prompt_logits[seq_id] = (positions, logits[at : at + len(flat)])
            at += len(flat)
        draft_logits: dict[int, torch.Tensor] = {}
        for seq_id, flat in step.draft_rows.items():
            draft_logits[seq_id] = logits[at : at + len(flat)]
            at += len(flat)
        return RunnerOutput(step.sample_seqs, logits[:num_sample], prompt_logits, draft_logits)
