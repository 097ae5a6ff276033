"""Pipeline parallel execution: one model's decoder layers split into N contiguous stages,
one process each (model/parallel/stages.py, stage.py). Rank 0 holds stage 0 (with the
embedding) and is the engine's process; its `PPDriver` is the model the runner sees. For
each step it broadcasts the step's positions and attention metadata, runs stage 0 on the
token ids and sends the hidden states to rank 1; each stage receives from the one before,
runs its layers over its own KV cache and sends on; the last stage applies the final norm
and sends the states back to rank 0, which returns them to the runner. For the rows the
runner wants logits of, rank 0 sends those states to the last stage (which holds the LM
head) and receives the float32 logits. All transfers are torch.distributed send / recv
(gloo). One step runs the stages one after the other (no micro-batches in flight: the
point is a model larger than one process's memory, not speed; docs/scale.md).

Starting the ranks, meeting, and failing a step cleanly when a worker dies are ranks.py's
(shared with tensor parallel). Knows nothing of HTTP or the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from hearth.engine.ranks import RankConfig, RankDriver, meet, worker_life
from hearth.engine.ranks import run_node as run_ranks
from hearth.model.batch import AttentionMetadata
from hearth.model.kv_cache import KVCache
from hearth.model.parallel.group import TPGroup
from hearth.model.parallel.stage import StageDecoder, build_stage
from hearth.model.parallel.stages import StagePlan, check_stages, stage_cache_config, stage_layers
from hearth.weights.config import ModelConfig
from hearth.weights.loader import LoadedWeights, load_weights


class PPConfig(RankConfig):
    """RankConfig of `--pipeline-parallel` stages (one rank each)."""

    flag: ClassVar[str] = "--pipeline-parallel"
    kind: ClassVar[str] = "pipeline-parallel"


def check_model(path: str | Path, size: int) -> None:
    """InvalidParameterError naming the valid sizes unless the model at `path` splits into
    `size` stages (reads its config only)."""
    check_stages(load_weights(path).config, size)


# -- workers ------------------------------------------------------------------------------
def run_worker(
    path: str, rank: int, size: int, host: str, port: int, dtype: str, threads: int
) -> None:
    """A worker's whole life (ranks.worker_life) with its stage: the process entry of
    spawned workers and of `hearth tp-worker --pipeline-parallel`."""
    torch.set_num_threads(max(1, threads))

    def build(group: TPGroup) -> StageDecoder:
        weights = load_weights(path, getattr(torch, dtype))
        return build_stage(
            StagePlan(weights.config, rank, size), weights.tensors, getattr(torch, dtype)
        )

    worker_life(rank, size, host, port, build, serve_steps)


@torch.inference_mode()
def serve_steps(stage: StageDecoder, group: TPGroup) -> None:
    """Run rank 0's commands: ("kv", num_blocks, block_size, dtype), ("forward",
    positions, meta) with the hidden states received from the stage before (sent on to the
    next stage; the last stage's go back to rank 0), ("logits", rows) on the last stage:
    receive (rows, hidden) states from rank 0, send back their (rows, vocab) logits;
    ("stop",)."""
    caches: list[KVCache] = []
    rank, size = group.rank, group.world_size
    hidden_size = stage.config.hidden_size
    dtype = stage.activation_dtype
    while True:
        command = group.broadcast_object()
        op = command[0]
        if op == "stop":
            return
        if op == "kv":
            caches = stage.allocate_kv_caches(*command[1:])
        elif op == "forward":
            positions, meta = command[1], command[2]
            hidden = group.recv(torch.empty(meta.num_tokens, hidden_size, dtype=dtype), rank - 1)
            group.send(stage.forward(hidden, positions, meta, caches), (rank + 1) % size)
        elif op == "logits" and stage.plan.is_last:
            rows = group.recv(torch.empty(command[1], hidden_size, dtype=dtype), 0)
            group.send(stage.compute_logits(rows), 0)


def run_node(path: str | Path, pp: PPConfig, node_rank: int, threads: int) -> None:
    """Another host's share of the stages (`hearth tp-worker --pipeline-parallel`)."""
    check_model(path, pp.size)
    run_ranks(path, pp, node_rank, threads, run_worker)


# -- rank 0 -------------------------------------------------------------------------------
class PPDriver(RankDriver):
    """Rank 0's model: stage 0 here, the other stages in the workers (see the module
    docstring). forward returns the last stage's final-normed states; compute_logits asks
    the last stage for the logits of the rows given."""

    kind = "pipeline-parallel"

    def __init__(self, stage: StageDecoder, group: TPGroup, workers: list[Any]) -> None:
        super().__init__(group, workers)
        self.stage = stage
        whole = stage.config
        self.vocab_size = whole.vocab_size
        self.dtype = stage.activation_dtype
        # the KV budget is per rank and every stage allocates the same number of blocks:
        # sized by the stage with the most layers
        longest = max(stage_layers(whole.num_hidden_layers, group.world_size), key=len)
        self.config: ModelConfig = stage_cache_config(whole, longest)

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttentionMetadata,
        kv_caches: Any,
    ) -> torch.Tensor:
        """(T,) ids -> (T, hidden_size) states after the last stage's final norm."""

        def local() -> torch.Tensor:
            hidden = self.stage.forward(input_ids, positions, meta, kv_caches)
            self.group.send(hidden, 1)
            return self.group.recv(torch.empty_like(hidden), self.group.world_size - 1)

        return self._run(("forward", positions, meta), local)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(N, hidden_size) -> (N, vocab_size) float32, from the last stage's LM head."""

        def local() -> torch.Tensor:
            last = self.group.world_size - 1
            self.group.send(hidden.to(self.dtype), last)
            logits = torch.empty(hidden.shape[0], self.vocab_size, dtype=torch.float32)
            return self.group.recv(logits, last)

        return self._run(("logits", hidden.shape[0]), local)

    def allocate_kv_caches(
        self, num_blocks: int, block_size: int, dtype: torch.dtype
    ) -> list[KVCache]:
        """Every stage's KV cache for its own layers, the same number of blocks on each."""
        return self._run(
            ("kv", num_blocks, block_size, dtype),
            lambda: self.stage.allocate_kv_caches(num_blocks, block_size, dtype),
        )


def start(
    path: str | Path, weights: LoadedWeights, pp: PPConfig, dtype: torch.dtype, threads: int
) -> PPDriver:
    """Spawn this host's workers, build stage 0 from `weights` (path's, as loaded), wait
    until every stage has loaded (a worker's load error is raised here) and meet.
    threads: torch threads of each worker."""
    check_stages(weights.config, pp.size)
    if pp.size < 2:
        raise ValueError("a pipeline needs at least 2 stages; run one process without it")

    def build(group: TPGroup) -> StageDecoder:
        return build_stage(StagePlan(weights.config, 0, pp.size), weights.tensors, dtype)

    stage, group, workers = meet(pp, run_worker, path, dtype, threads, build)
    return PPDriver(stage, group, workers)
