"""The training loop: AdamW over the trainable parameters (the adapters, or every weight
for a full fine-tune), warm-up + cosine learning rate, gradient accumulation (the loss of an
optimizer step is the mean over all its trained tokens, whatever the micro-batch split),
eval loss every N steps with early stopping (the best adapter is kept), atomic checkpoints,
and Ctrl-C: the step in flight finishes, a checkpoint is saved, the run says how to resume.
A resumed run restores the parameters, the optimizer, the RNG and the position in the data,
so its loss curve is the uninterrupted one. Knows nothing of files' formats, the store or
the terminal (progress goes to a callback)."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from hearth.errors import UserInputError
from hearth.model.layers.lora import adapter_disabled
from hearth.tune.checkpoint import load_checkpoint, save_checkpoint
from hearth.tune.forward import flatten, sequence_logprobs, token_losses
from hearth.tune.packing import Block, micro_batches
from hearth.tune.tokenize import TokenizedExample
from hearth.tune.train_config import TrainConfig, lr_at

if TYPE_CHECKING:
    from hearth.model.layers.decoder import Decoder

__all__ = ["StepReport", "TrainResult", "Trainer", "dpo_loss"]


@dataclass(frozen=True)
class StepReport:
    """What one optimizer step did (one JSON line of `hearth tune --json`)."""

    step: int
    total_steps: int
    epoch: int
    loss: float
    lr: float
    tokens: int
    tokens_per_s: float
    elapsed_s: float
    eta_s: float
    eval_loss: float | None = None
    reward_margin: float | None = None  # DPO
    reward_accuracy: float | None = None  # DPO


@dataclass
class TrainResult:
    steps: int
    interrupted: bool
    stopped_early: bool
    best_eval_loss: float | None
    history: list[dict[str, Any]] = field(default_factory=list)


def dpo_loss(
    policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """The sigmoid DPO loss of (B,) summed log-probabilities: (losses, chosen rewards,
    rejected rewards), each (B,). Rewards are beta * (policy - reference) log-ratios."""
    logits = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    losses = -F.logsigmoid(beta * logits)
    chosen = beta * (policy_chosen - ref_chosen).detach()
    rejected = beta * (policy_rejected - ref_rejected).detach()
    return losses, chosen, rejected


Item = Block | tuple[TokenizedExample, TokenizedExample]  # SFT block, or a DPO pair


class Trainer:
    """Trains `model` (its parameters with requires_grad) on `train` items. For DPO the items
    are (chosen, rejected) pairs and the reference is the model with its adapters off."""

    def __init__(
        self,
        model: Decoder,
        config: TrainConfig,
        train: list[Any],
        eval_items: list[Any] | None = None,
        checkpoint: Path | None = None,
    ) -> None:
        if not train:
            raise UserInputError("no training examples left (all went to the eval split?)")
        self.model = model
        self.config = config
        self.train_items: list[Item] = train
        self.eval_items: list[Item] = eval_items or []
        self.checkpoint = checkpoint
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if not self.params:
            raise UserInputError("the model has no trainable parameters")
        self.optimizer = torch.optim.AdamW(
            self.params.values(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.steps_per_epoch = math.ceil(
            math.ceil(len(train) / config.batch_size) / config.grad_accum
        )
        self.total_steps = config.max_steps or self.steps_per_epoch * config.epochs
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.best_eval: float | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_evals = 0
        self._stop = threading.Event()

    # ---- state -------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "params": {n: p.detach().clone() for n, p in self.params.items()},
            "optimizer": self.optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "history": self.history,
            "best_eval": self.best_eval,
            "best_state": self.best_state,
            "bad_evals": self.bad_evals,
            "config": {k: v for k, v in asdict(self.config).items() if k != "lora"},
        }

    def save(self) -> None:
        if self.checkpoint is not None:
            save_checkpoint(self.checkpoint, self.state())

    def resume(self) -> None:
        """Continue from the checkpoint file (same data and settings)."""
        assert self.checkpoint is not None
        self.load_state(load_checkpoint(self.checkpoint))

    def load_state(self, state: dict[str, Any]) -> None:
        """Take over a state() (a checkpoint's contents)."""
        if set(state["params"]) != set(self.params):
            raise UserInputError(
                f"--resume: the checkpoint at {self.checkpoint} was made with other trainable "
                "parameters (another --method, --rank or --targets); resume with the same settings"
            )
        with torch.no_grad():
            for name, value in state["params"].items():
                self.params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.best_eval = state["best_eval"]
        self.best_state = state["best_state"]
        self.bad_evals = int(state["bad_evals"])

    def request_stop(self) -> None:
        self._stop.set()

    # ---- the loop ----------------------------------------------------------------------

    def run(self, on_step: Callable[[StepReport], None] | None = None) -> TrainResult:
        stopped_early = interrupted = False
        start, done_tokens = time.monotonic(), 0
        first_step = self.step
        with _ctrl_c_requests_stop(self._stop):
            for epoch, batches in self._schedule():
                step_start = time.monotonic()
                lr = lr_at(self.step, self.total_steps, self.config)
                loss, tokens, extra = self._optimizer_step(batches, lr)
                self.step += 1
                done_tokens += tokens
                elapsed = time.monotonic() - start
                per_step = elapsed / (self.step - first_step)
                report = StepReport(
                    step=self.step, total_steps=self.total_steps, epoch=epoch, loss=loss, lr=lr,
                    tokens=tokens, tokens_per_s=tokens / max(time.monotonic() - step_start, 1e-9),
                    elapsed_s=elapsed, eta_s=per_step * (self.total_steps - self.step), **extra,
                )  # fmt: skip
                if self.eval_items and (
                    self.step % self.config.eval_every == 0 or self.step == self.total_steps
                ):
                    report = self._evaluate(report)
                    if self.config.patience is not None and self.bad_evals >= self.config.patience:
                        stopped_early = True
                self.history.append(asdict(report))
                if on_step is not None:
                    on_step(report)
                if self._stop.is_set():
                    interrupted = True
                    self.save()
                    break
                if stopped_early:
                    break
                if self.step % self.config.save_every == 0:
                    self.save()
        if not interrupted and self.best_state is not None:
            with torch.no_grad():  # early stopping and eval: keep the best adapter seen
                for name, value in self.best_state.items():
                    self.params[name].copy_(value)
        return TrainResult(self.step, interrupted, stopped_early, self.best_eval, self.history)

    def _schedule(self) -> Iterator[tuple[int, list[list[Item]]]]:
        """(epoch, the micro-batches of one optimizer step) from step self.step on."""
        step = 0
        epoch = 0
        accum = self.config.grad_accum
        while step < self.total_steps:
            batches = micro_batches(
                self.train_items, self.config.batch_size, self.config.seed, epoch
            )
            for s in range(0, len(batches), accum):
                if step >= self.total_steps:
                    return
                if step >= self.step:
                    yield epoch, batches[s : s + accum]
                step += 1
            epoch += 1

    def _optimizer_step(
        self, batches: list[list[Item]], lr: float
    ) -> tuple[float, int, dict[str, float]]:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        if self.config.method == "dpo":
            loss, tokens, extra = self._dpo_step(batches)
        else:
            loss, tokens, extra = self._sft_step(batches)
        if self.config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params.values(), self.config.max_grad_norm)
        self.optimizer.step()
        self.model.eval()
        return loss, tokens, extra

    def _sft_step(self, batches: list[list[Item]]) -> tuple[float, int, dict[str, float]]:
        flats = [flatten([ex for block in batch for ex in block.examples]) for batch in batches]  # type: ignore[union-attr]
        trained = sum(f.num_trained for f in flats)
        total = 0.0
        for flat in flats:
            loss = token_losses(self.model, flat) / trained
            loss.backward()
            total += float(loss.detach())
        return total, sum(len(f.input_ids) for f in flats), {}

    def _dpo_step(self, batches: list[list[Item]]) -> tuple[float, int, dict[str, float]]:
        pairs = sum(len(b) for b in batches)
        total = margin = correct = 0.0
        tokens = 0
        for batch in batches:
            examples = [ex for pair in batch for ex in pair]  # type: ignore[union-attr]
            flat = flatten(examples)
            tokens += len(flat.input_ids)
            with torch.no_grad(), adapter_disabled(self.model):
                ref = sequence_logprobs(self.model, flat)
            policy = sequence_logprobs(self.model, flat)
            losses, chosen, rejected = dpo_loss(
                policy[0::2], policy[1::2], ref[0::2], ref[1::2], self.config.beta
            )
            (losses.sum() / pairs).backward()
            total += float(losses.detach().sum()) / pairs
            margin += float((chosen - rejected).sum()) / pairs
            correct += float((chosen > rejected).float().sum()) / pairs
        return total, tokens, {"reward_margin": margin, "reward_accuracy": correct}

    def evaluate(self) -> float:
        """The mean loss over the eval items (DPO: the mean preference loss)."""
        with torch.no_grad():
            if self.config.method == "dpo":
                losses = []
                for pair in self.eval_items:
                    flat = flatten(list(pair))  # type: ignore[arg-type]
                    with adapter_disabled(self.model):
                        ref = sequence_logprobs(self.model, flat)
                    policy = sequence_logprobs(self.model, flat)
                    losses.append(
                        dpo_loss(policy[:1], policy[1:], ref[:1], ref[1:], self.config.beta)[0]
                    )
                return float(torch.cat(losses).mean())
            total, count = 0.0, 0
            for block in self.eval_items:
                flat = flatten(list(block.examples))  # type: ignore[union-attr]
                total += float(token_losses(self.model, flat))
                count += flat.num_trained
            return total / max(count, 1)

    def _evaluate(self, report: StepReport) -> StepReport:
        loss = self.evaluate()
        if self.best_eval is None or loss < self.best_eval:
            self.best_eval, self.bad_evals = loss, 0
            self.best_state = {n: p.detach().clone() for n, p in self.params.items()}
        else:
            self.bad_evals += 1
        return StepReport(**{**asdict(report), "eval_loss": loss})


@contextmanager
def _ctrl_c_requests_stop(stop: threading.Event) -> Iterator[None]:
    """The first Ctrl-C asks the loop to stop after this step (and save); a second one
    interrupts at once. Only the main thread can install signal handlers; elsewhere Ctrl-C
    keeps its default meaning."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        stop.set()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
