"""The settings of one tuning run, checked when built (the CLI's flags map onto these)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hearth.errors import InvalidParameterError
from hearth.model.layers.lora import LoraConfig

__all__ = ["METHODS", "TrainConfig", "lr_at"]

METHODS = ("lora", "qlora", "full", "dpo")


@dataclass(frozen=True)
class TrainConfig:
    """method: lora | qlora (LoRA over the int4/int8 base) | full | dpo (LoRA, preference
    loss). epochs, or max_steps when set (optimizer steps; it wins). Each optimizer step sees
    batch_size * grad_accum blocks of at most seq_len tokens. lr warms up linearly over
    warmup_steps, then follows a cosine to 0. eval_split: the share of examples held out;
    their loss is measured every eval_every steps, and `patience` evals without a better one
    stop the run (None: never). beta: DPO's temperature."""

    method: str = "lora"
    lora: LoraConfig = field(default_factory=LoraConfig)
    epochs: int = 1
    max_steps: int | None = None
    lr: float = 2e-4
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    batch_size: int = 4
    grad_accum: int = 1
    seq_len: int = 512
    pack: bool = True
    truncate: bool = False
    eval_split: float = 0.0
    eval_every: int = 50
    patience: int | None = None
    save_every: int = 100
    seed: int = 0
    beta: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidParameterError(
                "method", f"--method must be one of {', '.join(METHODS)}, got {self.method!r}"
            )
        positive = {
            "epochs": self.epochs, "batch_size": self.batch_size, "grad_accum": self.grad_accum,
            "seq_len": self.seq_len, "eval_every": self.eval_every, "save_every": self.save_every,
        }  # fmt: skip
        for name, value in positive.items():
            if not isinstance(value, int) or value <= 0:
                raise InvalidParameterError(
                    name, f"--{name.replace('_', '-')} must be a positive integer, got {value!r}"
                )
        if self.max_steps is not None and self.max_steps <= 0:
            raise InvalidParameterError(
                "max_steps", f"--max-steps must be > 0, got {self.max_steps}"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InvalidParameterError("lr", f"--lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise InvalidParameterError("warmup_steps", "--warmup must be >= 0")
        if not 0.0 <= self.eval_split < 1.0:
            raise InvalidParameterError(
                "eval_split", f"--eval-split must be in [0, 1), got {self.eval_split}"
            )
        if self.patience is not None and self.patience <= 0:
            raise InvalidParameterError("patience", "--patience must be a positive integer")
        if self.beta <= 0:
            raise InvalidParameterError("beta", f"--beta must be > 0, got {self.beta}")


def lr_at(step: int, total: int, config: TrainConfig) -> float:
    """The learning rate of optimizer step `step` (0-based): linear warm-up, then cosine."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, total - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
