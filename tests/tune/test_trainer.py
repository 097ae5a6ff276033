"""The loop: a learnable pattern is learned; Ctrl-C saves a checkpoint and --resume gives the
uninterrupted loss curve; eval loss, early stopping; a checkpoint that cannot be written
leaves the previous one intact."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from hearth.errors import StoreError
from hearth.model.layers.lora import LoraConfig, apply_lora
from hearth.tune.checkpoint import save_checkpoint
from hearth.tune.packing import make_blocks
from hearth.tune.tokenize import TokenizedExample
from hearth.tune.train_config import TrainConfig, lr_at
from hearth.tune.trainer import StepReport, Trainer


def pattern_examples(count: int, seed: int = 0) -> list[TokenizedExample]:
    """Random prompts, always answered by the same three tokens: learnable in a few steps."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        prompt = [rng.randrange(10, 120) for _ in range(rng.randrange(4, 12))]
        answer = [7, 8, 9]
        out.append(
            TokenizedExample(tuple(prompt + answer), (False,) * len(prompt) + (True,) * 3, f"x:{i}")
        )
    return out


def make_trainer(tiny_pair: Any, config: TrainConfig, checkpoint: Path | None = None) -> Trainer:
    _, model = tiny_pair("llama")
    apply_lora(model, config.lora, seed=config.seed)
    blocks = make_blocks(pattern_examples(48), config.seq_len, pack=True)
    held = make_blocks(pattern_examples(8, seed=1), config.seq_len, pack=True)
    return Trainer(model, config, blocks, held, checkpoint=checkpoint)


CONFIG = TrainConfig(
    lora=LoraConfig(rank=4, alpha=16.0, dropout=0.1), lr=2e-2, max_steps=8, batch_size=2,
    grad_accum=2, seq_len=48, warmup_steps=2, eval_every=4, seed=3,
)  # fmt: skip


def test_pattern_is_learned_and_eval_loss_reported(tiny_pair: Any) -> None:
    trainer = make_trainer(tiny_pair, CONFIG)
    before = trainer.evaluate()
    reports: list[StepReport] = []
    result = trainer.run(reports.append)
    assert result.steps == 8 and not result.interrupted
    assert [r.eval_loss is not None for r in reports] == [False] * 3 + [True] + [False] * 3 + [True]
    assert result.best_eval_loss is not None and result.best_eval_loss < before * 0.5
    assert reports[-1].lr == pytest.approx(lr_at(7, 8, CONFIG))


def test_ctrl_c_saves_and_resume_gives_the_same_curve(tiny_pair: Any, tmp_path: Path) -> None:
    full = [r.loss for r in _run(tiny_pair, None)]
    checkpoint = tmp_path / "run" / "checkpoint.pt"

    def interrupt(report: StepReport) -> None:
        if report.step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # the real signal, through the real handler

    trainer = make_trainer(tiny_pair, CONFIG, checkpoint)
    result = trainer.run(interrupt)
    assert result.interrupted and result.steps == 3 and checkpoint.is_file()
    resumed = make_trainer(tiny_pair, CONFIG, checkpoint)
    resumed.resume()
    rest: list[StepReport] = []
    resumed.run(rest.append)
    assert [r.step for r in rest] == list(range(4, 9))
    torch.testing.assert_close(
        torch.tensor([h["loss"] for h in result.history] + [r.loss for r in rest]),
        torch.tensor(full), rtol=0, atol=0,
    )  # fmt: skip


def _run(tiny_pair: Any, checkpoint: Path | None) -> list[StepReport]:
    reports: list[StepReport] = []
    make_trainer(tiny_pair, CONFIG, checkpoint).run(reports.append)
    return reports


def test_early_stopping_keeps_the_best(tiny_pair: Any) -> None:
    config = TrainConfig(
        lora=LoraConfig(rank=4),
        lr=0.5,
        max_steps=30,
        batch_size=2,
        seq_len=48,
        eval_every=1,
        patience=2,
        max_grad_norm=None,
    )  # fmt: skip  (a learning rate that diverges: eval loss stops improving)
    trainer = make_trainer(tiny_pair, config)
    result = trainer.run()
    assert result.stopped_early and result.steps < 30
    assert trainer.evaluate() == pytest.approx(result.best_eval_loss, rel=1e-5)


def test_failed_save_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})
    before = path.read_bytes()
    (tmp_path / f".checkpoint.pt.{os.getpid()}.tmp").mkdir()  # the temporary file cannot be made
    with pytest.raises(StoreError, match="previous checkpoint is intact"):
        save_checkpoint(path, {"step": 2})
    assert path.read_bytes() == before
