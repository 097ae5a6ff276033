"""SimReplica: one engine as the simulator sees it, scheduled by the engine's own code.

Each step is decided by hearth.engine's Scheduler over its BlockManager, built with the
engine's declared defaults (EngineConfig: step token budget, max running sequences, block
size) exactly as LLMEngine builds them: running sequences oldest first (decodes and
unfinished prompt chunks alike), then waiting ones in arrival order, prompts chunked to
the budget, the cache-aware wait for a prefix a running prefill is computing, prefix hits
at block granularity, LRU eviction of cached blocks and preemption when the pool (here
`kv_tokens`) runs short. The sequences carry synthetic token ids (or a request's real
ones); only the model is replaced: a step's duration is StepCosts of its StepShape, and a
sequence whose tokens are all computed after a step samples one (a prompt's last chunk
gives the request its first token), as LLMEngine does, until `output_tokens`."""

from __future__ import annotations

from dataclasses import dataclass, field

from hearth.engine.block_manager import BlockManager
from hearth.engine.engine_config import EngineConfig
from hearth.engine.sampling_params import SamplingParams
from hearth.engine.scheduler import Scheduler, SchedulerConfig, SchedulerOutput
from hearth.engine.sequence import Sequence
from hearth.sim.costs import StepCosts, StepShape
from hearth.sim.trace import SimRequest

ENGINE_DEFAULTS = EngineConfig()
# a sampled token no prompt holds (prompts' synthetic ids are >= 0 or small negatives)
_OUTPUT_TOKEN = -(2**40)


def step_shape(batch: SchedulerOutput) -> StepShape:
    """What a scheduled step computes (before Scheduler.postprocess), as LLMEngine counts
    it: a row of one new token past the prompt is a decode, every other row a prompt token."""
    prefill = decodes = pairs = keys = 0
    for seq, n in zip(batch.seqs, batch.num_tokens, strict=True):
        start = seq.num_computed_tokens
        if n == 1 and start >= seq.num_prompt_tokens:
            decodes += 1
            keys += start + 1
        else:
            prefill += n
            pairs += n * start + n * (n + 1) // 2
    return StepShape(prefill, decodes, pairs, keys)


@dataclass
class SimSequence:
    request: SimRequest
    seq: Sequence
    first_token_s: float | None = None
    finished_s: float | None = None

    @property
    def generated(self) -> int:
        return self.seq.num_output_tokens


@dataclass
class SimReplica:
    costs: StepCosts
    kv_tokens: int = 16384
    config: EngineConfig = ENGINE_DEFAULTS
    scheduler: Scheduler = field(init=False)
    in_flight: dict[int, SimSequence] = field(init=False, default_factory=dict)  # by seq_id
    busy: bool = False
    prompt_tokens: int = 0  # prompt tokens computed (not served from the prefix cache)
    batch: SchedulerOutput | None = field(init=False, default=None)  # the step under way

    def __post_init__(self) -> None:
        c = self.config
        blocks = BlockManager(max(1, self.kv_tokens // c.block_size), c.block_size)
        self.scheduler = Scheduler(
            SchedulerConfig(c.max_num_batched_tokens, c.max_num_seqs, c.num_lora_slots), blocks
        )

    @property
    def load(self) -> int:
        """Requests in flight (what Ray Serve's router sees as the replica's queue)."""
        return len(self.in_flight)

    @property
    def hit_tokens(self) -> int:
        return self.scheduler.block_manager.num_prefix_hit_tokens

    def admit(self, request: SimRequest) -> None:
        params = SamplingParams(max_tokens=request.output_tokens, ignore_eos=True)
        seq = Sequence(
            str(request.id), list(request.token_ids()), params, block_size=self.config.block_size
        )
        self.in_flight[seq.seq_id] = SimSequence(request, seq)
        self.scheduler.add(seq)

    def plan_step(self) -> float:
        """Schedule this step's work; its duration (0: nothing to do)."""
        self.batch = self.scheduler.schedule()
        if not self.batch:
            return 0.0
        shape = step_shape(self.batch)
        self.prompt_tokens += shape.prefill_tokens
        return self.costs.step_s(shape)

    def finish_step(self, end_s: float) -> list[SimSequence]:
        """Apply the planned step at its end; the sequences that finished."""
        batch, self.batch = self.batch, None
        if not batch:
            return []
        self.scheduler.postprocess(batch)
        done = []
        for seq in batch.seqs:
            if seq.num_computed_tokens < len(seq):
                continue  # a prompt chunk that is not the last
            seq.append_token(_OUTPUT_TOKEN - seq.num_output_tokens)
            sim = self.in_flight[seq.seq_id]
            if sim.first_token_s is None:
                sim.first_token_s = end_s
            if seq.num_output_tokens >= sim.request.output_tokens:
                self.scheduler.finish(seq, "length")
                sim.finished_s = end_s
                del self.in_flight[seq.seq_id]
                done.append(sim)
        return done
