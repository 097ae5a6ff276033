"""Tensor parallel execution: one model's weights split over N processes (model/parallel/
plan.py, shard.py). Rank 0's `TPDriver` is the model the runner sees: it broadcasts each
step (token ids, positions, attention metadata; then the rows to take logits of) to the
workers before running its own shard. Workers (ranks 1..N-1) run `run_worker`: load the
checkpoint, keep their cut, then run the same forward on every step they receive, over
their own KV-cache shard. Starting the ranks, meeting, and failing a step cleanly when a
worker dies are ranks.py's (shared with pipeline parallel). Knows nothing of HTTP or the
CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from hearth.engine.ranks import RankConfig, RankDriver, meet, worker_life
from hearth.engine.ranks import run_node as run_ranks
from hearth.model.batch import AttentionMetadata
from hearth.model.kv_cache import KVCache, allocate_kv_caches
from hearth.model.parallel.group import TPGroup
from hearth.model.parallel.plan import ShardPlan, check_size
from hearth.model.parallel.shard import ShardDecoder, build_shard
from hearth.weights.config import ModelConfig
from hearth.weights.loader import LoadedWeights, load_weights


class TPConfig(RankConfig):
    """RankConfig of `--tensor-parallel` ranks."""

    flag: ClassVar[str] = "--tensor-parallel"
    kind: ClassVar[str] = "tensor-parallel"


def check_model(path: str | Path, size: int) -> None:
    """InvalidParameterError naming the valid sizes unless the model at `path` splits into
    `size` ranks (reads its config only)."""
    check_size(load_weights(path).config, size)


# -- workers ------------------------------------------------------------------------------
def run_worker(
    path: str, rank: int, size: int, host: str, port: int, dtype: str, threads: int
) -> None:
    """A worker's whole life (ranks.worker_life) with its shard: the process entry of
    spawned workers and of `hearth tp-worker`."""
    torch.set_num_threads(max(1, threads))

    def build(group: TPGroup) -> ShardDecoder:
        weights = load_weights(path, getattr(torch, dtype))
        plan = ShardPlan(weights.config, rank, size)
        return build_shard(plan, weights.tensors, group, getattr(torch, dtype))

    worker_life(rank, size, host, port, build, serve_steps)


@torch.inference_mode()
def serve_steps(model: ShardDecoder, group: TPGroup) -> None:
    """Run rank 0's commands: ("kv", num_blocks, block_size, dtype), ("forward", ids,
    positions, meta), ("logits", hidden), ("stop",)."""
    caches: list[KVCache] = []
    while True:
        command = group.broadcast_object()
        op = command[0]
        if op == "stop":
            return
        if op == "kv":
            caches = allocate_kv_caches(model.config, *command[1:])
        elif op == "forward":
            model.forward(command[1], command[2], command[3], caches)
        elif op == "logits":
            model.compute_logits(command[1])


def run_node(path: str | Path, tp: TPConfig, node_rank: int, threads: int) -> None:
    """Another host's share of the ranks (`hearth tp-worker`)."""
    check_model(path, tp.size)
    run_ranks(path, tp, node_rank, threads, run_worker)


# -- rank 0 -------------------------------------------------------------------------------
class TPDriver(RankDriver):
    """Rank 0's model: each call is broadcast to the workers, then run on rank 0's own
    shard."""

    kind = "tensor-parallel"

    def __init__(self, shard: ShardDecoder, group: TPGroup, workers: list[Any]) -> None:
        super().__init__(group, workers)
        self.shard = shard
        self.config: ModelConfig = shard.config  # the shard's (what its KV cache holds)

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttentionMetadata,
        kv_caches: Any,
    ) -> torch.Tensor:
        return self._run(
            ("forward", input_ids, positions, meta),
            lambda: self.shard.forward(input_ids, positions, meta, kv_caches),
        )

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._run(("logits", hidden), lambda: self.shard.compute_logits(hidden))

    def allocate_kv_caches(
        self, num_blocks: int, block_size: int, dtype: torch.dtype
    ) -> list[KVCache]:
        """Every rank's KV-cache shard (its KV heads), the same number of blocks on each."""
        return self._run(
            ("kv", num_blocks, block_size, dtype),
            lambda: allocate_kv_caches(self.config, num_blocks, block_size, dtype),
        )


def start(
    path: str | Path, weights: LoadedWeights, tp: TPConfig, dtype: torch.dtype, threads: int
) -> TPDriver:
    """Spawn this host's workers, cut rank 0's shard from `weights` (path's, as loaded),
    wait until every rank has loaded (a worker's load error is raised here) and meet.
    threads: torch threads of each worker."""
    check_size(weights.config, tp.size)

    def build(group: TPGroup) -> ShardDecoder:
        return build_shard(ShardPlan(weights.config, 0, tp.size), weights.tensors, group, dtype)

    shard, group, workers = meet(tp, run_worker, path, dtype, threads, build)
    return TPDriver(shard, group, workers)
