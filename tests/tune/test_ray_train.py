"""Distributed tuning on Ray Train (TorchTrainer) over a local Ray started by the run on
127.0.0.1: two workers give the loss curve of one process at the same global batch (fp32,
within 1e-4), the driver's model ends with the trained weights, and each step's report
reaches the driver as the step ends; a Ctrl-C on the driver stops every worker after a step
with a checkpoint, and the resumed run ends on the one-process curve."""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from test_distributed import CONFIG
from test_trainer import pattern_examples

from hearth.tune.distributed import RankJob, build_rank_model
from hearth.tune.packing import make_blocks
from hearth.tune.trainer import StepReport, Trainer


@pytest.mark.timeout(900)
@pytest.mark.slow  # Ray start-up dominates: 76-108 s on the shared machine
@pytest.mark.parametrize("shard", ["none", "full"])
def test_ray_train_workers_give_the_one_process_loss_curve(
    tiny_pair: Any, tmp_path: Path, shard: str
) -> None:
    pytest.importorskip("ray.train.torch")
    from hearth.tune.ray_train import LOCAL, RayTrainer

    tiny_pair("llama")
    folder = next(p for p in tmp_path.iterdir() if p.name.startswith("llama"))
    blocks = make_blocks(pattern_examples(45), CONFIG.seq_len, pack=False)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    job = RankJob(str(folder), "float32", CONFIG, blocks, [], str(checkpoint), shard=shard)

    model = build_rank_model(job)
    seen: list[StepReport] = []
    result = RayTrainer(model, job, 2, LOCAL).run(seen.append)
    assert result.steps == 10 and [r.step for r in seen] == list(range(1, 11))
    assert checkpoint.is_file()  # rank 0 wrote it (the same machine here)

    single = Trainer(build_rank_model(job), replace(CONFIG, batch_size=4), blocks, [])
    expected = single.run()
    torch.testing.assert_close(
        torch.tensor([r.loss for r in seen]),
        torch.tensor([h["loss"] for h in expected.history]),
        atol=1e-4, rtol=0,
    )  # fmt: skip
    got = dict(model.named_parameters())
    for name, want in single.params.items():
        torch.testing.assert_close(got[name], want, atol=1e-4, rtol=0, msg=name)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_ctrl_c_on_the_driver_stops_with_a_checkpoint_that_resumes(
    tiny_pair: Any, tmp_path: Path
) -> None:
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.train.torch")
    from hearth.tune.ray_train import LOCAL, RayTrainer

    tiny_pair("llama")
    folder = next(p for p in tmp_path.iterdir() if p.name.startswith("llama"))
    blocks = make_blocks(pattern_examples(45), CONFIG.seq_len, pack=False)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    config = replace(CONFIG, max_steps=30, lr=5e-3)
    job = RankJob(str(folder), "float32", config, blocks, [], str(checkpoint), shard="full")

    def ctrl_c_at_step_3(report: StepReport) -> None:
        if report.step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=3, include_dashboard=False, object_store_memory=100 * 1024**2,
             _node_ip_address="127.0.0.1", logging_level=logging.WARNING, log_to_driver=False)  # fmt: skip
    try:
        first = RayTrainer(build_rank_model(job), job, 2, LOCAL).run(ctrl_c_at_step_3)
        assert first.interrupted and 3 <= first.steps < 30
        assert torch.load(checkpoint, weights_only=True)["step"] == first.steps
        again = RayTrainer(build_rank_model(job), job, 2, LOCAL)
        again.resume()
        result = again.run()
    finally:
        ray.shutdown()
    assert result.steps == 30 and not result.interrupted
    single = Trainer(build_rank_model(job), replace(config, batch_size=4), blocks, [])
    expected = single.run()
    torch.testing.assert_close(
        torch.tensor([h["loss"] for h in result.history]),
        torch.tensor([h["loss"] for h in expected.history]),
        atol=1e-4, rtol=0,
    )  # fmt: skip
