"""Sequence: the engine's state for one completion of one request — its token ids (prompt
then output), how many of them are in the KV cache, its block table, its sampling state.
A request with n > 1 has n sequences. Knows nothing of the model or of text."""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from hearth.engine.sampling_params import SamplingParams


class SequenceStatus(enum.Enum):
    WAITING = "waiting"  # not holding blocks (new, or preempted)
    RUNNING = "running"  # holds blocks, scheduled every step
    FINISHED = "finished"


@dataclass
class Logprob:
    """One token's log-probability, its rank in the distribution (1 = most likely) and,
    once the engine detokenizes it, its text."""

    logprob: float
    rank: int | None = None
    decoded: str | None = None


_counter = itertools.count()  # process-wide ids: only used for ordering and dict keys


class Sequence:
    """One completion in flight.

    `token_ids` is prompt + output. `num_computed_tokens` of them have K/V in the cache;
    the scheduler asks the model for the rest, in chunks. When all of them are computed the
    step samples a new token. After a preemption `num_computed_tokens` goes back to 0 and
    the blocks are released (recompute).
    """

    def __init__(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        params: SamplingParams,
        *,
        index: int = 0,
        block_size: int,
        generator: torch.Generator | None = None,
    ) -> None:
        if not prompt_token_ids:
            raise ValueError("prompt_token_ids must not be empty")
        self.seq_id = next(_counter)
        self.request_id = request_id
        self.index = index  # which of the request's n completions
        self.params = params
        self.block_size = block_size
        self.token_ids: list[int] = list(prompt_token_ids)
        self.num_prompt_tokens = len(prompt_token_ids)
        self.status = SequenceStatus.WAITING
        self.block_table: list[int] = []
        # chained content hashes of this sequence's full blocks (computed lazily, kept
        # across preemption since tokens only ever get appended)
        self.block_hashes: list[int] = []
        # its LoRA adapter's name (None: the base) and the root of its block-hash chain,
        # the adapter's key: sequences of different adapters never share KV blocks
        self.lora: str | None = None
        self.prefix_key: int | None = None
        self.num_computed_tokens = 0
        self.num_cached_tokens = 0  # prompt tokens served from the prefix cache (last admission)
        self.num_preemptions = 0
        self.generator = generator
        self.finish_reason: str | None = None  # "stop" | "length" | "abort" | "error"
        self.stop_reason: int | str | None = None
        self.error: BaseException | None = None
        self.logprobs: list[dict[int, Logprob]] = []
        self.cumulative_logprob = 0.0
        self.prompt_logprobs: list[dict[int, Logprob] | None] = []
        self.matcher: Any = None  # structured-output matcher, once compiled
        self.matcher_future: Any = None  # concurrent.futures.Future while compiling
        self.closed_by_budget = False  # the grammar was completed early to fit max_tokens
        # speculation (engine/spec/): tokens proposed after token_ids for this step only,
        # verified in its forward and then cleared; lifetime counts of drafted / accepted
        self.draft_token_ids: list[int] = []
        self.num_draft_tokens = 0
        self.num_accepted_draft_tokens = 0

    # -- token bookkeeping ----------------------------------------------------------
    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def prompt_token_ids(self) -> list[int]:
        return self.token_ids[: self.num_prompt_tokens]

    @property
    def num_uncomputed_tokens(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    def append_token(self, token_id: int) -> None:
        self.token_ids.append(token_id)

    def num_blocks_for(self, num_tokens: int) -> int:
        return (num_tokens + self.block_size - 1) // self.block_size

    # -- readiness ------------------------------------------------------------------
    def is_ready(self) -> bool:
        """Whether the scheduler may admit this sequence now: its grammar is compiled.
        (Waiting for a prefix another sequence is computing is the scheduler's job.)"""
        return self.matcher_future is None or self.matcher_future.done()

    def __repr__(self) -> str:
        return (
            f"Sequence(id={self.seq_id}, req={self.request_id!r}, {self.status.value}, "
            f"tokens={len(self.token_ids)}, computed={self.num_computed_tokens}, "
            f"blocks={self.block_table})"
        )
