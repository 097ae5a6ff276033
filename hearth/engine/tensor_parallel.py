"""Tensor parallel execution: one model's weights split over N processes (model/parallel/).
Rank 0 is the engine's process: its scheduler, sampler and this module's `TPDriver`, the
model the runner sees, which broadcasts each step (token ids, positions, attention
metadata; then the rows to take logits of) to the workers before running its own shard.
Workers (ranks 1..N-1) run `run_worker`: load the checkpoint, keep their cut, then run the
same forward on every step they receive, over their own KV-cache shard.

Local workers are spawned with torch.multiprocessing; workers on other hosts are started
there (`hearth tp-worker`, torchrun's MASTER_ADDR / MASTER_PORT) and meet rank 0 at the
same address. A worker that dies fails the step that needed it with a retryable
CapacityError (503 in the server) and leaves the driver `broken`: every later step fails
the same way at once, and the owner (the server's model pool) loads the model afresh.
Knows nothing of HTTP or the CLI."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from hearth.errors import CapacityError, UserInputError
from hearth.model.batch import AttentionMetadata
from hearth.model.kv_cache import KVCache, allocate_kv_caches
from hearth.model.parallel.group import GroupAddress, TPGroup
from hearth.model.parallel.plan import ShardPlan, check_size
from hearth.model.parallel.shard import ShardDecoder, build_shard
from hearth.weights.config import ModelConfig
from hearth.weights.loader import LoadedWeights, load_weights

log = logging.getLogger(__name__)

# a worker waits this long for the next step before it gives up (an idle server sends none;
# a dead rank 0 is noticed at once, its sockets close)
STEP_TIMEOUT_S = 7 * 24 * 3600.0
# seconds a restarted server's model waits before a 503'd client retries
RETRY_AFTER_S = 5.0


@dataclass(frozen=True)
class TPConfig:
    """size: ranks in all; nnodes: hosts they run on (size / nnodes on each; rank 0's host
    spawns its own share). host / port: where rank 0 listens (port 0: a free one, single
    node only); timeout_s: how long rank 0 waits for every rank to load and join."""

    size: int = 1
    nnodes: int = 1
    host: str = "127.0.0.1"
    port: int = 0
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise UserInputError(f"--tensor-parallel must be >= 1, got {self.size}")
        if self.nnodes < 1 or self.size % self.nnodes:
            raise UserInputError(
                f"--nnodes {self.nnodes} must divide --tensor-parallel {self.size} "
                "(each host runs the same number of ranks)"
            )
        if self.nnodes > 1 and self.port == 0:
            raise UserInputError(
                "--nnodes > 1 needs a fixed rendezvous port: set MASTER_ADDR and MASTER_PORT "
                "(as torchrun does) on every host"
            )

    @property
    def local_size(self) -> int:
        return self.size // self.nnodes


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_model(path: str | Path, size: int) -> None:
    """InvalidParameterError naming the valid sizes unless the model at `path` splits into
    `size` ranks (reads its config only)."""
    check_size(load_weights(path).config, size)


# -- workers ------------------------------------------------------------------------------
def run_worker(
    path: str, rank: int, size: int, host: str, port: int, dtype: str, threads: int
) -> None:
    """A worker's whole life: load its shard, say so at the store (or say what failed),
    meet the group, then run every step rank 0 broadcasts until told to stop. The process
    entry of spawned workers and of `hearth tp-worker`."""
    torch.set_num_threads(max(1, threads))
    store = TPGroup.store(GroupAddress(host, port, size), rank)
    group = TPGroup(rank, size)
    try:
        weights = load_weights(path, getattr(torch, dtype))
        plan = ShardPlan(weights.config, rank, size)
        model = build_shard(plan, weights.tensors, group, getattr(torch, dtype))
    except Exception as exc:  # told to rank 0, which raises it; nothing else to do here
        store.set(f"error/{rank}", f"{type(exc).__name__}: {exc}")
        raise SystemExit(1) from exc
    del weights
    store.set(f"ready/{rank}", "1")
    group.connect(store, STEP_TIMEOUT_S)
    serve_steps(model, group)


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
    """Another host's share of the ranks (`hearth tp-worker`): spawn them, wait for all.
    The model's dtype is float32, as rank 0's dense road loads it."""
    if not 0 < node_rank < tp.nnodes:
        raise UserInputError(f"--node-rank must be in 1..{tp.nnodes - 1}, got {node_rank}")
    check_model(path, tp.size)
    first = node_rank * tp.local_size
    per_rank = max(1, threads // tp.local_size)
    context = mp.get_context("spawn")
    procs: list[BaseProcess] = []
    for rank in range(first, first + tp.local_size):
        args = (str(path), rank, tp.size, tp.host, tp.port, "float32", per_rank)
        proc = context.Process(target=_worker_main, args=args)
        proc.start()
        procs.append(proc)
    for worker in procs:
        worker.join()


def _worker_main(*args: Any) -> None:
    """Spawned workers: quiet about the broken group when rank 0 goes away."""
    try:
        run_worker(*args)
    except RuntimeError as exc:  # a collective failed: rank 0 stopped or died
        log.debug("tensor-parallel worker stops: %s", exc)


# -- rank 0 -------------------------------------------------------------------------------
class TPDriver:
    """What the model runner holds on rank 0 (forward / compute_logits, as a Decoder): each
    call is broadcast to the workers, then run on rank 0's own shard. `close` stops them."""

    def __init__(self, shard: ShardDecoder, group: TPGroup, workers: list[BaseProcess]) -> None:
        self.shard = shard
        self.group = group
        self.workers = workers
        self.config: ModelConfig = shard.config  # the shard's (what its KV cache holds)
        self.broken: str | None = None

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

    def _run(self, command: tuple[Any, ...], local: Any) -> Any:
        self._check_workers()
        try:
            self.group.broadcast_object(command)
            return local()
        except Exception as exc:
            # the ranks may now be at different points of the step: never step again
            log.warning("tensor-parallel step failed: %s", exc)
            self.broken = self._wait_for_dead_worker() or (
                "a tensor-parallel step failed: a rank stopped answering"
            )
            raise CapacityError(self._message(), retry_after=RETRY_AFTER_S) from exc
        except BaseException:
            # Ctrl-C inside a step: the workers are left mid-step, so this group cannot
            # step again (later steps say the model must be loaded again)
            self.broken = "a tensor-parallel step was interrupted"
            raise

    def _check_workers(self) -> None:
        if self.broken is None:
            self.broken = self._dead_worker()
        if self.broken is not None:
            raise CapacityError(self._message(), retry_after=RETRY_AFTER_S)

    def _dead_worker(self) -> str | None:
        for rank, proc in enumerate(self.workers, start=1):
            if not proc.is_alive():
                return f"tensor-parallel worker rank {rank} stopped (exit code {proc.exitcode})"
        return None

    def _wait_for_dead_worker(self, within_s: float = 2.0) -> str | None:
        """The worker whose death broke the step: its sockets close a moment before the
        process is seen to have exited."""
        deadline = time.monotonic() + within_s
        while (dead := self._dead_worker()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return dead

    def _message(self) -> str:
        return (
            f"{self.broken}; the request failed and this model must be loaded again (a "
            "server does so at the next request, so retry there; elsewhere start it again)"
        )

    def close(self) -> None:
        """Stop the workers (told to, then terminated if they do not)."""
        if self.broken is None:
            try:
                self.group.broadcast_object(("stop",))
            except Exception as exc:  # a worker already gone: terminated below
                log.debug("stopping tensor-parallel workers: %s", exc)
            self.broken = "the model was unloaded"
        for proc in self.workers:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)


def start(
    path: str | Path, weights: LoadedWeights, tp: TPConfig, dtype: torch.dtype, threads: int
) -> TPDriver:
    """Spawn this host's workers, cut rank 0's shard from `weights` (path's, as loaded),
    wait until every rank has loaded (a worker's load error is raised here) and meet.
    threads: torch threads of each worker."""
    check_size(weights.config, tp.size)
    port = tp.port or free_port(tp.host)
    address = GroupAddress(tp.host, port, tp.size, tp.timeout_s)
    store = TPGroup.store(address, 0)
    dtype_name = str(dtype).removeprefix("torch.")
    context = mp.get_context("spawn")
    workers: list[BaseProcess] = []
    for rank in range(1, tp.local_size):
        args = (str(path), rank, tp.size, tp.host, port, dtype_name, threads)
        proc = context.Process(target=_worker_main, args=args, daemon=True)
        proc.start()
        workers.append(proc)
    group = TPGroup(0, tp.size)
    try:
        shard = build_shard(ShardPlan(weights.config, 0, tp.size), weights.tensors, group, dtype)
        _wait_ready(store, tp, workers)
        group.connect(store, STEP_TIMEOUT_S)
    except BaseException:
        for worker in workers:
            worker.terminate()
        raise
    log.info(
        "tensor parallel: %d ranks, %d on this host, met at %s:%d",
        tp.size,
        tp.local_size,
        tp.host,
        port,
    )
    return TPDriver(shard, group, workers)


def _wait_ready(store: Any, tp: TPConfig, workers: list[BaseProcess]) -> None:
    """Until every rank has said it loaded; a rank's error or a local worker's death is
    raised (the error as the worker reported it)."""
    deadline = time.monotonic() + tp.timeout_s
    waiting = set(range(1, tp.size))
    while waiting:
        for rank in sorted(waiting):
            if store.check([f"error/{rank}"]):
                message = store.get(f"error/{rank}").decode()
                raise CapacityError(f"tensor-parallel rank {rank} could not load: {message}")
            if store.check([f"ready/{rank}"]):
                waiting.discard(rank)
        for rank, proc in enumerate(workers, start=1):
            if rank in waiting and not proc.is_alive() and not store.check([f"error/{rank}"]):
                raise CapacityError(
                    f"tensor-parallel worker rank {rank} exited while loading "
                    f"(exit code {proc.exitcode})"
                )
        if waiting and time.monotonic() > deadline:
            raise CapacityError(
                f"tensor-parallel ranks {sorted(waiting)} did not join within "
                f"{tp.timeout_s:g} s at {tp.host}:{tp.port}; start them (hearth tp-worker) or "
                "check MASTER_ADDR / MASTER_PORT"
            )
        if waiting:
            time.sleep(0.05)
