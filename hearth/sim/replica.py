"""SimReplica: one engine as the simulator sees it. Each step follows the engine's
scheduler (hearth.engine.scheduler): running decodes first (one token each), then running
prefills, then waiting requests in arrival order, chunked to the step's token budget and
bounded by max_num_seqs; a request whose system prompt another request on this replica is
still prefilling waits (keeping its place) until it is cached, then shares it. The prefix
cache holds whole KV blocks of system prompts, least recently used out beyond
`kv_tokens`. A prefill's last step samples the request's first token."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from hearth.sim.costs import StepCosts
from hearth.sim.trace import SimRequest


@dataclass
class SimSequence:
    request: SimRequest
    prefill_left: int = 0
    generated: int = 0
    chunk: int = 0  # tokens it computes in the step under way
    first_token_s: float | None = None
    finished_s: float | None = None
    fills_prefix: bool = False  # its prefill puts the system prompt into the cache


@dataclass
class SimReplica:
    costs: StepCosts
    kv_tokens: int = 16384
    max_num_batched_tokens: int = 512
    max_num_seqs: int = 64
    block_size: int = 16
    waiting: list[SimSequence] = field(default_factory=list)
    running: list[SimSequence] = field(default_factory=list)
    cache: OrderedDict[int, int] = field(default_factory=OrderedDict)  # prefix -> tokens
    filling: set[int] = field(default_factory=set)  # prefixes being prefilled
    busy: bool = False
    prompt_tokens: int = 0
    hit_tokens: int = 0

    @property
    def load(self) -> int:
        """Requests in flight (what Ray Serve's router sees as the replica's queue)."""
        return len(self.waiting) + len(self.running)

    def admit(self, request: SimRequest) -> None:
        self.waiting.append(SimSequence(request))

    def plan_step(self) -> float:
        """Choose this step's work; its duration (0: nothing to do)."""
        budget = self.max_num_batched_tokens
        decodes = [s for s in self.running if not s.prefill_left]
        for s in decodes:
            s.chunk = 1
        budget -= len(decodes)
        prefill = 0
        for s in self.running:
            if s.prefill_left and budget > 0:
                s.chunk = min(s.prefill_left, budget)
                budget -= s.chunk
                prefill += s.chunk
        for s in list(self.waiting):
            if budget <= 0 or len(self.running) >= self.max_num_seqs:
                break
            if s.request.prefix_id in self.filling:
                continue  # shares the prefix once it is cached
            self._start(s)
            s.chunk = min(s.prefill_left, budget)
            budget -= s.chunk
            prefill += s.chunk
        return self.costs.step_s(prefill, len(decodes))

    def _start(self, s: SimSequence) -> None:
        r = s.request
        shared = (r.prefix_tokens // self.block_size) * self.block_size
        if r.prefix_id in self.cache:
            self.cache.move_to_end(r.prefix_id)
            hit = shared
        else:
            hit = 0
            s.fills_prefix = shared > 0
            if s.fills_prefix:
                self.filling.add(r.prefix_id)
        s.prefill_left = r.prompt_tokens - hit
        self.hit_tokens += hit
        self.prompt_tokens += s.prefill_left
        self.waiting.remove(s)
        self.running.append(s)

    def finish_step(self, end_s: float) -> list[SimSequence]:
        """Apply the planned step at its end; the sequences that finished."""
        done = []
        for s in self.running:
            if not s.chunk:
                continue
            if s.prefill_left:
                s.prefill_left -= s.chunk
                if not s.prefill_left:
                    self._prefilled(s, end_s)
            else:
                s.generated += 1
            s.chunk = 0
            if not s.prefill_left and s.generated >= s.request.output_tokens:
                s.finished_s = end_s
                done.append(s)
        self.running = [s for s in self.running if s.finished_s is None]
        return done

    def _prefilled(self, s: SimSequence, end_s: float) -> None:
        s.generated, s.first_token_s = 1, end_s
        r = s.request
        if s.fills_prefix:
            self.filling.discard(r.prefix_id)
            self.cache[r.prefix_id] = r.prefix_tokens
            while sum(self.cache.values()) > self.kv_tokens and len(self.cache) > 1:
                self.cache.popitem(last=False)
