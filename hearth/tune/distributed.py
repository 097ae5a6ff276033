"""Data-parallel tuning over N processes (`hearth tune --nproc N`): PyTorch's
DistributedDataParallel over gloo (`--shard none`), or FSDP2 (`--shard full`, sharding.py:
each rank holds 1/N of the weights, gradients and AdamW state), each rank on its share of
every optimizer step's blocks, with the loss curve of one process at the same global batch
(N x micro-batch x accumulation). The ranks are local processes spawned here, or Ray Train
workers (ray_train.py), which join their own process group before building this trainer.

How the data is split: the one-process schedule at batch size N x micro-batch (trainer.py,
shuffled by seed and epoch) gives each optimizer step's global micro-batches; rank r takes
blocks r, r + N, ... of each, which is DistributedSampler's interleaving of the same
shuffled order. Each rank's loss is its tokens' summed cross-entropy over the *global*
trained-token count, times N (DDP averages gradients over ranks), so the synchronised
gradient is the one-process gradient and every rank takes the same AdamW step (FSDP's
reduce-scatter averages the same way). A rank left without a block in a short last batch
runs one with weight 0 (DDP's all-reduce and FSDP's gathers need every rank). Only rank 0
writes checkpoints, in the one-process format (FSDP gathers them first); api.tune stores
the adapter from rank 0 alone, whose module holds the full trained weights at the end.

Rank 0 is the caller's process (it holds the model api.tune built); ranks 1..N-1 are
spawned with torch.multiprocessing and rebuild the same model from the same file and seed
(DDP also broadcasts rank 0's parameters at the start). LoRA dropout draws from each rank's
own RNG, so the curves equal one process's only without dropout. Knows nothing of the
store or the terminal."""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from hearth.errors import UnsupportedModelError, UserInputError
from hearth.tune.checkpoint import save_checkpoint
from hearth.tune.forward import flatten, token_losses
from hearth.tune.sharding import full_state, shard_model, sharded_state, unshard_all
from hearth.tune.train_config import TrainConfig
from hearth.tune.trainer import Item, Trainer, TrainResult
from hearth.tune.training_model import training_model

__all__ = ["DistributedTrainer", "RankJob", "start_rank0"]


@dataclass(frozen=True)
class RankJob:
    """What every rank builds, the same everywhere (pickled to the spawned ranks): the base
    model's file, the weights' dtype, the run's config as the user gave it (batch_size is
    each rank's micro-batch), the prepared blocks, and the checkpoint to resume from."""

    model_path: str
    dtype: str
    config: TrainConfig
    train: list[Any]
    eval: list[Any]
    checkpoint: str | None = None
    resume: bool = False
    shard: str = "none"  # "full": FSDP; "none": DDP (sharding.resolve_shard decided)


class _DecoderDDP(DistributedDataParallel):
    """DDP whose wrapped Decoder's attributes (config, model, compute_logits) stay reachable:
    the loss code (tune/forward.py) reads them and calls the model, which runs DDP's
    forward (so the gradients it produces are all-reduced)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


class DistributedTrainer(Trainer):
    """A Trainer of rank `dist.get_rank()` of the default process group. `owns_group`: this
    trainer leaves the group when done (Ray Train's workers leave their own)."""

    def __init__(
        self,
        model: Any,
        job: RankJob,
        workers: list[BaseProcess] | None = None,
        owns_group: bool = True,
    ) -> None:
        self.world = dist.get_world_size()
        self.rank = dist.get_rank()
        if job.config.method == "dpo":
            raise UnsupportedModelError("--method dpo runs on one process: leave out --nproc")
        # the global view: its schedule is the one-process schedule at the global batch
        config = replace(job.config, batch_size=job.config.batch_size * self.world)
        checkpoint = Path(job.checkpoint) if job.checkpoint else None
        self.sharded = job.shard == "full"
        self.base_model = model
        self.ddp: _DecoderDDP | None = None
        if self.sharded:  # before the optimizer is built: its parameters become shards
            shard_model(model)
        super().__init__(model, config, job.train, job.eval, checkpoint)
        if not self.sharded:
            self.ddp = _DecoderDDP(model)
            self.model = self.ddp  # type: ignore[assignment]  # the loop goes through DDP
        self.workers = workers or []
        self.owns_group = owns_group
        # a stop asked from another thread (Ray Train's driver): agreed by every rank in the
        # next step's all-reduce, never acted on by this rank alone
        self.stop_requested = threading.Event()

    def state(self) -> dict[str, Any]:
        state = super().state()
        return full_state(state) if self.sharded else state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(sharded_state(state, self.params) if self.sharded else state)

    def save(self) -> None:
        if self.checkpoint is None or (self.rank != 0 and not self.sharded):
            return
        state = self.state()  # sharded: gathered, so every rank takes part
        if self.rank == 0:
            save_checkpoint(self.checkpoint, state)

    def run(self, on_step: Any = None) -> TrainResult:
        try:
            result = super().run(on_step if self.rank == 0 else None)
            if self.sharded and not result.interrupted:
                unshard_all(self.base_model)  # the caller saves the full trained weights
            return result
        finally:
            self.close()

    def close(self) -> None:
        """Leave the group; rank 0 waits for its spawned ranks."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
        for proc in self.workers:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
        failed = [p.exitcode for p in self.workers if p.exitcode not in (0, None)]
        self.workers = []
        if failed:
            raise UserInputError(f"a tuning rank failed (exit codes {failed}); see its error above")

    def _sft_step(self, batches: list[list[Item]]) -> tuple[float, int, dict[str, float]]:
        """One optimizer step's forward/backward on this rank's blocks of each global
        micro-batch; (global loss, global tokens) as the one-process step reports them."""
        trained = sum(flatten(_examples(batch)).num_trained for batch in batches)
        mine_loss, mine_tokens = 0.0, 0
        for i, batch in enumerate(batches):
            mine, weight = batch[self.rank :: self.world], float(self.world)
            if not mine:  # keep DDP's all-reduce in step: a block that counts for nothing
                mine, weight = batch[:1], 0.0
            flat = flatten(_examples(mine))
            last = i == len(batches) - 1
            with self._gradient_sync(last):
                part = token_losses(self.model, flat) / trained
                (part * weight).backward()
            if weight:
                mine_loss += float(part.detach())
                mine_tokens += len(flat.input_ids)
        # with a Ctrl-C seen by any rank (a terminal sends it to all), so that every rank
        # stops after this same step
        stop = float(self._stop.is_set() or self.stop_requested.is_set())
        totals = torch.tensor([mine_loss, float(mine_tokens), stop], dtype=torch.float64)
        dist.all_reduce(totals)
        if totals[2] > 0:
            self._stop.set()
        return float(totals[0]), int(totals[1]), {}

    def _gradient_sync(self, sync: bool) -> contextlib.AbstractContextManager[None]:
        """Accumulated micro-batches reduce their gradients once, with the last one."""
        if self.ddp is not None:
            return contextlib.nullcontext() if sync else self.ddp.no_sync()
        self.model.set_requires_gradient_sync(sync)  # type: ignore[operator]
        return contextlib.nullcontext()


def _examples(blocks: list[Item]) -> list[Any]:
    return [ex for block in blocks for ex in block.examples]  # type: ignore[union-attr]


def build_rank_model(job: RankJob) -> Any:
    """The model api.tune builds for this job (same file, method, dtype, LoRA seed)."""
    return training_model(Path(job.model_path), job.config, getattr(torch, job.dtype))


def _join(rank: int, world: int, port: int) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )


def _rank_main(rank: int, world: int, port: int, job: RankJob, threads: int) -> None:
    """A spawned rank: join, build, (resume,) train, leave."""
    torch.set_num_threads(threads)
    _join(rank, world, port)
    trainer = DistributedTrainer(build_rank_model(job), job)
    if job.resume:
        trainer.resume()
    trainer.run()


def start_rank0(model: Any, job: RankJob, nproc: int) -> DistributedTrainer:
    """Spawn ranks 1..nproc-1, join as rank 0 with `model` (built from `job`), and return
    rank 0's trainer; its `run` trains all ranks and waits for them. Each rank gets an
    equal share of this process's threads."""
    if nproc < 2:
        raise UserInputError(f"--nproc must be >= 2 for distributed tuning, got {nproc}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    threads = max(1, torch.get_num_threads() // nproc)
    context = mp.get_context("spawn")
    workers: list[BaseProcess] = []
    for rank in range(1, nproc):
        spawned = context.Process(target=_rank_main, args=(rank, nproc, port, job, threads))
        spawned.start()
        workers.append(spawned)
    torch.set_num_threads(threads)
    try:
        _join(0, nproc, port)
        return DistributedTrainer(model, job, workers)
    except BaseException:
        for worker in workers:
            worker.terminate()
        if dist.is_initialized():
            dist.destroy_process_group()
        raise
