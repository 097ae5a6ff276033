"""Distributed tuning on a Ray cluster (`hearth tune --nproc N --ray-address ADDR|local`):
Ray Train's TorchTrainer runs N workers (ScalingConfig(num_workers=N), CPU only), joins
them in a gloo process group, and each runs the same DistributedTrainer as the local ranks
(DDP, or FSDP with --shard full), so the loss curve is the local one's. This process (the
driver) trains nothing: rank 0 sends each step's report and, at the end, its trained
parameters back through a Ray queue (an actor on the driver's cluster, so no shared
storage is needed), and the driver's model takes them before api.tune stores it.

On a cluster of several hosts, hearth (same version) must be installed on every node, and
--resume needs the checkpoint folder ($HEARTH_HOME/tune/NAME) on storage rank 0's node and
the driver share. The first Ctrl-C on the driver asks rank 0 to stop: every rank stops
after the next step and rank 0 saves a checkpoint, as a local run does; a second one
interrupts at once. Knows nothing of the store or the terminal."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from hearth.config import quiet_ray_usage_stats
from hearth.errors import OptionalDependencyError, UserInputError
from hearth.ray_address import check_reachable
from hearth.tune.distributed import DistributedTrainer, RankJob, build_rank_model
from hearth.tune.trainer import StepReport, Trainer, TrainResult, _ctrl_c_requests_stop

__all__ = ["LOCAL", "RayTrainer", "check_address"]

LOCAL = "local"  # --ray-address local: start a Ray on 127.0.0.1 for this run
CONNECT_TIMEOUT_S = 10.0
_OBJECT_STORE_BYTES = 200 * 1024**2  # a transit for the reports and the trained weights
_LOCAL_HINT = ", or use --ray-address local to run the workers on a Ray started here"


def _import_ray() -> Any:
    try:
        import ray
        import ray.train.torch  # TorchTrainer's extra (ray[train])
    except ImportError as exc:
        raise OptionalDependencyError(
            "--ray-address runs on Ray Train, which is not installed: pip install 'hearth[ray]'"
        ) from exc
    return ray


def check_address(address: str) -> None:
    """UserInputError (exit 2) within seconds unless `address` is 'local' or a Ray cluster
    answers there (ray.init would otherwise retry for minutes)."""
    if address != LOCAL:
        check_reachable(address, CONNECT_TIMEOUT_S, _LOCAL_HINT)


class RayTrainer(Trainer):
    """A Trainer whose `run` trains on Ray Train workers and then holds their result in
    `model` (the driver's copy, built as every worker builds its own)."""

    def __init__(self, model: Any, job: RankJob, nproc: int, address: str) -> None:
        if job.config.method == "dpo":
            raise UserInputError("--method dpo runs on one process: leave out --nproc")
        check_address(address)
        checkpoint = Path(job.checkpoint) if job.checkpoint else None
        # the global view (the schedule's step count); the workers run the loop
        global_config = replace(job.config, batch_size=job.config.batch_size * nproc)
        super().__init__(model, global_config, job.train, job.eval, checkpoint)
        self.job, self.nproc, self.address = job, nproc, address

    def resume(self) -> None:
        super().resume()  # the driver's view (its step); the workers load the file too
        self.job = replace(self.job, resume=True)

    def run(self, on_step: Callable[[StepReport], None] | None = None) -> TrainResult:
        ray = _import_ray()
        started = self._connect(ray)
        try:
            with _ctrl_c_requests_stop(self._stop):
                params, result = self._fit(on_step)
        finally:
            if started:
                ray.shutdown()
        with torch.no_grad():
            for name, value in params.items():
                self.params[name].copy_(value)
        self.step = result.steps
        return result

    def _connect(self, ray: Any) -> bool:
        """Join the cluster (or start a local Ray); whether this call started it."""
        if ray.is_initialized():  # a test (or the caller) already holds one
            return False
        quiet_ray_usage_stats()
        quiet: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
        if self.address != LOCAL:
            try:
                ray.init(address=self.address, **quiet)
            except (ConnectionError, TimeoutError, RuntimeError) as exc:
                raise UserInputError(f"cannot join the Ray cluster at {self.address}: {exc}") from exc
            return True
        ray.init(
            num_cpus=self.nproc + 1,  # the workers and Ray Train's controller
            include_dashboard=False,
            object_store_memory=_OBJECT_STORE_BYTES,
            _node_ip_address="127.0.0.1",
            **quiet,
        )
        return True

    def _fit(
        self, on_step: Callable[[StepReport], None] | None
    ) -> tuple[dict[str, torch.Tensor], TrainResult]:
        """Run the TorchTrainer in a thread while this one relays rank 0's reports."""
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
        from ray.util.queue import Empty, Queue

        queue, control = Queue(), Queue()  # rank 0 -> here; here -> rank 0 (a stop)
        local = self.address == LOCAL
        threads = max(1, torch.get_num_threads() // self.nproc) if local else None
        storage = (self.checkpoint.parent if self.checkpoint else Path.cwd()) / "ray"
        trainer = TorchTrainer(
            _worker_loop,
            train_loop_config={
                "job": self.job, "queue": queue, "control": control, "threads": threads
            },
            scaling_config=ScalingConfig(num_workers=self.nproc, use_gpu=False),
            torch_config=TorchConfig(backend="gloo"),
            run_config=RunConfig(name="hearth-tune", storage_path=str(storage.resolve())),
        )
        failure: list[BaseException] = []

        def fit() -> None:
            try:
                trainer.fit()
            except BaseException as exc:  # relayed to the caller's thread below
                failure.append(exc)

        runner = threading.Thread(target=fit, name="hearth-ray-train", daemon=True)
        runner.start()
        done: tuple[dict[str, torch.Tensor], TrainResult] | None = None
        asked = False
        while done is None and (runner.is_alive() or not queue.empty()):
            if self._stop.is_set() and not asked:  # Ctrl-C here: rank 0 passes it on
                control.put("stop")
                asked = True
            try:
                kind, payload = queue.get(timeout=0.5)
            except Empty:
                continue
            if kind == "step" and on_step is not None:
                on_step(StepReport(**payload))
            elif kind == "done":
                done = payload["params"], TrainResult(**payload["result"])
        runner.join()
        if failure or done is None:
            why = f": {failure[0]}" if failure else " (rank 0 sent no result)"
            raise UserInputError(f"the Ray Train run failed{why}")
        return done


def _worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: Ray has joined it to the gloo group; train as a local rank
    does; rank 0 relays its reports and its trained parameters to the driver."""
    job: RankJob = config["job"]
    queue, control = config["queue"], config["control"]
    if config["threads"] is not None:
        torch.set_num_threads(config["threads"])
    trainer = DistributedTrainer(build_rank_model(job), job, owns_group=False)
    if job.resume:
        trainer.resume()

    def on_step(report: StepReport) -> None:  # rank 0's
        queue.put(("step", asdict(report)))
        if not control.empty():  # the driver's Ctrl-C: every rank stops after the next step
            trainer.stop_requested.set()

    result = trainer.run(on_step if trainer.rank == 0 else None)
    if trainer.rank == 0:  # the weights (full tensors under FSDP too) of a finished run
        trained = {
            name: p.detach().clone()
            for name, p in trainer.base_model.named_parameters()
            if name in trainer.params and not result.interrupted
        }
        queue.put(("done", {"params": trained, "result": asdict(result)}))
