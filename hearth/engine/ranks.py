"""The process side of model parallelism, shared by tensor parallel (tensor_parallel.py) and
pipeline parallel (pipeline_parallel.py): where the ranks meet (RankConfig), starting the
local workers and waiting for every rank to load, a worker's life (load, say so, meet, run
rank 0's steps), and rank 0's RankDriver, whose every step fails cleanly when a worker dies.

Rank 0 is the engine's process: its scheduler, sampler and driver. Local workers are
spawned with torch.multiprocessing; workers on other hosts are started there (`hearth
tp-worker`, torchrun's MASTER_ADDR / MASTER_PORT) and meet rank 0 at the same address. A
worker that dies fails the step that needed it with a retryable CapacityError (503 in the
server) and leaves the driver `broken`: every later step fails the same way at once, and the
owner (the server's model pool) loads the model afresh. Knows nothing of HTTP or the CLI."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
import torch.multiprocessing as mp

from hearth.errors import CapacityError, UserInputError
from hearth.model.kv_cache import KVCache
from hearth.model.parallel.group import GroupAddress, TPGroup
from hearth.weights.config import ModelConfig

log = logging.getLogger(__name__)

# a worker waits this long for the next step before it gives up (an idle server sends none;
# a dead rank 0 is noticed at once, its sockets close)
STEP_TIMEOUT_S = 7 * 24 * 3600.0
# seconds a restarted server's model waits before a 503'd client retries
RETRY_AFTER_S = 5.0

M = TypeVar("M")
# a worker process's entry: (path, rank, size, host, port, dtype name, threads)
WorkerEntry = Callable[[str, int, int, str, int, str, int], None]


@dataclass(frozen=True)
class RankConfig:
    """size: ranks in all; nnodes: hosts they run on (size / nnodes on each; rank 0's host
    spawns its own share). host / port: where rank 0 listens (port 0: a free one, single
    node only); timeout_s: how long rank 0 waits for every rank to load and join.
    `flag` / `kind`: how messages name the option and the ranks."""

    size: int = 1
    nnodes: int = 1
    host: str = "127.0.0.1"
    port: int = 0
    timeout_s: float = 600.0
    flag: ClassVar[str] = "--ranks"
    kind: ClassVar[str] = "model-parallel"

    def __post_init__(self) -> None:
        if self.size < 1:
            raise UserInputError(f"{self.flag} must be >= 1, got {self.size}")
        if self.nnodes < 1 or self.size % self.nnodes:
            raise UserInputError(
                f"--nnodes {self.nnodes} must divide {self.flag} {self.size} "
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


# -- workers ------------------------------------------------------------------------------
def worker_life(
    rank: int,
    size: int,
    host: str,
    port: int,
    build: Callable[[TPGroup], M],
    serve: Callable[[M, TPGroup], None],
) -> None:
    """A worker's whole life: build its part of the model, say so at the store (or say
    what failed), meet the group, then `serve` rank 0's steps until told to stop."""
    store = TPGroup.store(GroupAddress(host, port, size), rank)
    group = TPGroup(rank, size)
    try:
        model = build(group)
    except Exception as exc:  # told to rank 0, which raises it; nothing else to do here
        store.set(f"error/{rank}", f"{type(exc).__name__}: {exc}")
        raise SystemExit(1) from exc
    store.set(f"ready/{rank}", "1")
    group.connect(store, STEP_TIMEOUT_S)
    serve(model, group)


def worker_main(entry: WorkerEntry, *args: Any) -> None:
    """Spawned workers: quiet about the broken group when rank 0 goes away."""
    try:
        entry(*args)
    except RuntimeError as exc:  # a collective failed: rank 0 stopped or died
        log.debug("model-parallel worker stops: %s", exc)


def spawn_workers(
    entry: WorkerEntry,
    path: str | Path,
    ranks: range,
    config: RankConfig,
    port: int,
    dtype: torch.dtype,
    threads: int,
    daemon: bool = True,
) -> list[BaseProcess]:
    """Start `ranks` as local processes running `entry` (each with `threads` torch threads)."""
    dtype_name = str(dtype).removeprefix("torch.")
    context = mp.get_context("spawn")
    workers: list[BaseProcess] = []
    for rank in ranks:
        args = (entry, str(path), rank, config.size, config.host, port, dtype_name, threads)
        proc = context.Process(target=worker_main, args=args, daemon=daemon)
        proc.start()
        workers.append(proc)
    return workers


def run_node(path: str | Path, config: RankConfig, node_rank: int, threads: int,
             entry: WorkerEntry) -> None:  # fmt: skip
    """Another host's share of the ranks (`hearth tp-worker`): spawn them, wait for all.
    The model's dtype is float32, as rank 0's dense road loads it."""
    if not 0 < node_rank < config.nnodes:
        raise UserInputError(f"--node-rank must be in 1..{config.nnodes - 1}, got {node_rank}")
    first = node_rank * config.local_size
    per_rank = max(1, threads // config.local_size)
    ranks = range(first, first + config.local_size)
    procs = spawn_workers(entry, path, ranks, config, config.port, torch.float32, per_rank, False)
    for worker in procs:
        worker.join()


def meet(
    config: RankConfig, entry: WorkerEntry, path: str | Path, dtype: torch.dtype, threads: int,
    build: Callable[[TPGroup], M],
) -> tuple[M, TPGroup, list[BaseProcess]]:  # fmt: skip
    """Rank 0's start: spawn this host's workers (running `entry`), `build` rank 0's own
    part, wait until every rank has loaded (a worker's load error is raised here) and meet.
    Returns rank 0's part, the group and the local workers."""
    port = config.port or free_port(config.host)
    store = TPGroup.store(GroupAddress(config.host, port, config.size, config.timeout_s), 0)
    workers = spawn_workers(entry, path, range(1, config.local_size), config, port, dtype, threads)
    group = TPGroup(0, config.size)
    try:
        model = build(group)
        _wait_ready(store, config, workers)
        group.connect(store, STEP_TIMEOUT_S)
    except BaseException:
        for worker in workers:
            worker.terminate()
        raise
    log.info(
        "%s: %d ranks, %d on this host, met at %s:%d",
        config.kind, config.size, config.local_size, config.host, port,
    )  # fmt: skip
    return model, group, workers


def _wait_ready(store: Any, config: RankConfig, workers: list[BaseProcess]) -> None:
    """Until every rank has said it loaded; a rank's error or a local worker's death is
    raised (the error as the worker reported it)."""
    deadline = time.monotonic() + config.timeout_s
    waiting = set(range(1, config.size))
    while waiting:
        for rank in sorted(waiting):
            if store.check([f"error/{rank}"]):
                message = store.get(f"error/{rank}").decode()
                raise CapacityError(f"{config.kind} rank {rank} could not load: {message}")
            if store.check([f"ready/{rank}"]):
                waiting.discard(rank)
        for rank, proc in enumerate(workers, start=1):
            if rank in waiting and not proc.is_alive() and not store.check([f"error/{rank}"]):
                raise CapacityError(
                    f"{config.kind} worker rank {rank} exited while loading "
                    f"(exit code {proc.exitcode})"
                )
        if waiting and time.monotonic() > deadline:
            raise CapacityError(
                f"{config.kind} ranks {sorted(waiting)} did not join within "
                f"{config.timeout_s:g} s at {config.host}:{config.port}; start them "
                "(hearth tp-worker) or check MASTER_ADDR / MASTER_PORT"
            )
        if waiting:
            time.sleep(0.05)


# -- rank 0 -------------------------------------------------------------------------------
class RankDriver:
    """What the model runner holds on rank 0 in place of a Decoder (forward /
    compute_logits / allocate_kv_caches, in the subclasses): each call runs through `_run`,
    which tells the workers the step and fails it cleanly when a worker is gone. `config`:
    what rank 0's KV cache is sized by (the budget is per rank; every rank allocates the
    same number of blocks). `close` stops the workers."""

    kind = "model-parallel"
    config: ModelConfig

    def __init__(self, group: TPGroup, workers: list[BaseProcess]) -> None:
        self.group = group
        self.workers = workers
        self.broken: str | None = None

    def allocate_kv_caches(
        self, num_blocks: int, block_size: int, dtype: torch.dtype
    ) -> list[KVCache]:
        """Every rank's KV cache, the same number of blocks on each; rank 0's returned."""
        raise NotImplementedError

    def _run(self, command: tuple[Any, ...], local: Callable[[], Any]) -> Any:
        """Broadcast `command` to the workers, then run rank 0's share of it."""
        self._check_workers()
        try:
            self.group.broadcast_object(command)
            return local()
        except Exception as exc:
            # the ranks may now be at different points of the step: never step again
            log.warning("%s step failed: %s", self.kind, exc)
            self.broken = self._wait_for_dead_worker() or (
                f"a {self.kind} step failed: a rank stopped answering"
            )
            raise CapacityError(self._message(), retry_after=RETRY_AFTER_S) from exc
        except BaseException:
            # Ctrl-C inside a step: the workers are left mid-step, so this group cannot
            # step again (later steps say the model must be loaded again)
            self.broken = f"a {self.kind} step was interrupted"
            raise

    def _check_workers(self) -> None:
        if self.broken is None:
            self.broken = self._dead_worker()
        if self.broken is not None:
            raise CapacityError(self._message(), retry_after=RETRY_AFTER_S)

    def _dead_worker(self) -> str | None:
        for rank, proc in enumerate(self.workers, start=1):
            if not proc.is_alive():
                return f"{self.kind} worker rank {rank} stopped (exit code {proc.exitcode})"
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
                log.debug("stopping %s workers: %s", self.kind, exc)
            self.broken = "the model was unloaded"
        for proc in self.workers:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
