"""Fine-tuning verbs: `hearth tune BASE --data PATH --name NEW` (LoRA / DPO, progress bar or
one JSON line per step), `hearth export NAME --format peft --output DIR`. Parses, calls
hearth.tune, prints; torch and the tune package are imported inside the commands so the CLI
starts fast."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hearth.cli.output import Output
from hearth.errors import InvalidParameterError

if TYPE_CHECKING:
    import torch

    from hearth.tune.api import TuneOutcome
    from hearth.tune.trainer import StepReport

DTYPES = ("bf16", "fp32")


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_command)
    app.command("merge")(merge_command)
    app.command("export")(export_command)


# the options of this command, declared once so its signature stays short
_BaseArg = Annotated[str, typer.Argument(help="The stored model to tune (hearth list).")]
_DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        help="Training data: .jsonl/.json/.csv/.parquet/.txt, a datasets folder, or hf://datasets/ORG/NAME[/FILE].",
    ),
]
_NameOpt = Annotated[str, typer.Option("--name", help="Name of the tuned model in the store.")]
_MethodOpt = Annotated[str, typer.Option("--method", help="lora | dpo | full | qlora.")]
_RankOpt = Annotated[int, typer.Option("--rank", help="LoRA rank r.")]
_AlphaOpt = Annotated[float, typer.Option("--alpha", help="LoRA alpha (scale alpha / r).")]
_DropoutOpt = Annotated[float, typer.Option("--dropout", help="Dropout on the adapter's input.")]
_RsloraOpt = Annotated[
    bool, typer.Option("--rslora", help="Scale by alpha / sqrt(r) (rank-stabilised LoRA).")
]
_TargetsOpt = Annotated[
    str, typer.Option("--targets", help="Comma-separated projections to adapt.")
]
_EpochsOpt = Annotated[int, typer.Option("--epochs")]
_MaxStepsOpt = Annotated[
    int | None, typer.Option("--max-steps", help="Optimizer steps (wins over --epochs).")
]
_LrOpt = Annotated[float, typer.Option("--lr", help="Peak learning rate.")]
_WarmupOpt = Annotated[int, typer.Option("--warmup", help="Warm-up steps before the cosine decay.")]
_BatchSizeOpt = Annotated[int, typer.Option("--batch-size", help="Blocks per micro-batch.")]
_GradAccumOpt = Annotated[
    int, typer.Option("--grad-accum", help="Micro-batches per optimizer step.")
]
_SeqLenOpt = Annotated[int, typer.Option("--seq-len", help="Tokens per block (longest example).")]
_NoPackOpt = Annotated[bool, typer.Option("--no-pack", help="One example per block.")]
_TruncateOpt = Annotated[
    bool, typer.Option("--truncate", help="Cut examples longer than --seq-len.")
]
_EvalSplitOpt = Annotated[
    float, typer.Option("--eval-split", help="Share of examples held out for eval loss.")
]
_EvalEveryOpt = Annotated[int, typer.Option("--eval-every", help="Steps between eval losses.")]
_PatienceOpt = Annotated[
    int | None, typer.Option("--patience", help="Stop after this many evals without improvement.")
]
_SaveEveryOpt = Annotated[int, typer.Option("--save-every", help="Steps between checkpoints.")]
_SeedOpt = Annotated[int, typer.Option("--seed")]
_BetaOpt = Annotated[float, typer.Option("--beta", help="DPO temperature.")]
_DtypeOpt = Annotated[str, typer.Option("--dtype", help="Base weights: bf16 (kept bf16) or fp32.")]
_ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue the interrupted run of --name.")
]
_DataFromOpt = Annotated[
    str | None,
    typer.Option(
        "--data-from",
        help="The stored model whose outputs the data are (its license is checked for training other models).",
    ),
]
_AcceptLicenseOpt = Annotated[
    bool, typer.Option("--accept-license", help="Record acceptance of the base's license terms.")
]
_JsonFlagOpt = Annotated[bool, typer.Option("--json", help="One JSON line per step.")]
_NprocOpt = Annotated[
    int,
    typer.Option(
        "--nproc",
        help="Train data-parallel over this many processes (torch.distributed, gloo; local, or Ray Train workers with --ray-address); the global batch is nproc x --batch-size x --grad-accum.",
    ),
]
_ShardOpt = Annotated[
    str,
    typer.Option(
        "--shard",
        help="With --nproc: full = FSDP (each rank holds 1/nproc of the weights, gradients and AdamW state; like accelerate's FULL_SHARD), none = DDP (a full copy per rank), auto = full when one copy's weights + gradients + AdamW state exceed half of RAM / nproc (qlora: none).",
    ),
]
_RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Run the --nproc ranks as Ray Train workers (TorchTrainer) on the Ray cluster at HOST:PORT (or ray://HOST:PORT, auto), or 'local' for a Ray started for this run.",
    ),
]


def tune_command(
    ctx: typer.Context,
    base: _BaseArg,
    data: _DataOpt,
    name: _NameOpt,
    method: _MethodOpt = "lora",
    rank: _RankOpt = 16,
    alpha: _AlphaOpt = 32.0,
    dropout: _DropoutOpt = 0.0,
    rslora: _RsloraOpt = False,
    targets: _TargetsOpt = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
    epochs: _EpochsOpt = 1,
    max_steps: _MaxStepsOpt = None,
    lr: _LrOpt = 0.0002,
    warmup: _WarmupOpt = 0,
    batch_size: _BatchSizeOpt = 4,
    grad_accum: _GradAccumOpt = 1,
    seq_len: _SeqLenOpt = 512,
    no_pack: _NoPackOpt = False,
    truncate: _TruncateOpt = False,
    eval_split: _EvalSplitOpt = 0.0,
    eval_every: _EvalEveryOpt = 50,
    patience: _PatienceOpt = None,
    save_every: _SaveEveryOpt = 100,
    seed: _SeedOpt = 0,
    beta: _BetaOpt = 0.1,
    dtype: _DtypeOpt = "bf16",
    resume: _ResumeOpt = False,
    data_from: _DataFromOpt = None,
    accept_license: _AcceptLicenseOpt = False,
    json_flag: _JsonFlagOpt = False,
    nproc: _NprocOpt = 1,
    shard: _ShardOpt = "auto",
    ray_address: _RayAddressOpt = None,
) -> None:
    """Fine-tune BASE on your data (LoRA by default) and store the result as NEW."""
    from hearth.model.layers.lora import LoraConfig
    from hearth.tune.api import tune
    from hearth.tune.train_config import TrainConfig

    out = Output.of(ctx, json_flag)
    torch_dtype = _torch_dtype(dtype)
    lora = LoraConfig(rank=rank, alpha=alpha, dropout=dropout, rslora=rslora,
                      targets=tuple(t.strip() for t in targets.split(",") if t.strip()))  # fmt: skip
    config = TrainConfig(
        method=method, lora=lora, epochs=epochs, max_steps=max_steps, lr=lr, warmup_steps=warmup,
        batch_size=batch_size, grad_accum=grad_accum, seq_len=seq_len, pack=not no_pack,
        truncate=truncate, eval_split=eval_split, eval_every=eval_every, patience=patience,
        save_every=save_every, seed=seed, beta=beta,
    )  # fmt: skip
    progress = _Progress(out)
    try:
        outcome = tune(
            base, data, name, config, resume=resume, data_from=data_from,
            dtype=torch_dtype,
            accept_license=accept_license, on_step=progress.step, on_info=progress.info,
            nproc=nproc, shard=shard, ray_address=ray_address,
        )  # fmt: skip
    finally:
        progress.close()
    _finish(out, outcome, sys.argv[1:])


def _torch_dtype(dtype: str) -> torch.dtype:
    """--dtype as torch's (InvalidParameterError names the allowed ones)."""
    import torch

    if dtype not in DTYPES:
        raise InvalidParameterError(
            "dtype", f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}"
        )
    return torch.bfloat16 if dtype == "bf16" else torch.float32


def _finish(out: Output, outcome: TuneOutcome, argv: list[str]) -> None:
    for message in outcome.warnings:
        Output.warning(message)
    if outcome.record is not None and not out.json:
        from hearth.tune.export import license_obligations

        out.console.print(license_obligations(outcome.record.license_id), highlight=False)
    result = outcome.result
    if result.interrupted:
        again = " ".join(a for a in ["hearth", *argv] if a != "--resume") + " --resume"
        message = (
            f"stopped at step {result.steps}; checkpoint saved to {outcome.checkpoint}. "
            f"Resume with: {again}"
        )
        if out.json:
            sys.stdout.write(json.dumps({"event": "interrupted", "step": result.steps,
                                         "checkpoint": str(outcome.checkpoint), "resume": again}) + "\n")  # fmt: skip
        else:
            Output.warning(message)
        raise typer.Exit(130)
    summary: dict[str, Any] = {
        "event": "done",
        "name": outcome.name,
        "steps": result.steps,
        "stopped_early": result.stopped_early,
        "best_eval_loss": result.best_eval_loss,
        "final_loss": result.history[-1]["loss"] if result.history else None,
        "trainable_params": outcome.trainable_params,
        "digest": outcome.record.digest if outcome.record else None,
    }
    if out.json:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    out.console.print(
        f"stored [bold]{outcome.name}[/] ({result.steps} steps, final loss "
        f"{summary['final_loss']:.4f}"
        + (
            f", best eval loss {result.best_eval_loss:.4f}"
            if result.best_eval_loss is not None
            else ""
        )
        + (", stopped early" if result.stopped_early else "")
        + f"); `hearth merge {outcome.name}` makes a model run/serve can use, "
        f"`hearth export {outcome.name} --format peft --output DIR` an adapter for PEFT",
        highlight=False,
    )


class _Progress:
    """A rich progress bar (step, loss, eval loss, lr, tokens/s, ETA) or, with --json, one
    JSON line per step on stdout."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.bar: Any = None
        self.task: Any = None
        self.eval_loss: float | None = None

    def info(self, message: str) -> None:
        if self.out.json:
            sys.stdout.write(json.dumps({"event": "info", "message": message}) + "\n")
        else:
            self.out.console.print(message, highlight=False)

    def step(self, report: StepReport) -> None:
        if self.out.json:
            sys.stdout.write(json.dumps({"event": "step", **asdict(report)}) + "\n")
            sys.stdout.flush()
            return
        if report.eval_loss is not None:
            self.eval_loss = report.eval_loss
        if self.bar is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("tune"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(), console=self.out.console,
            )  # fmt: skip
            self.bar.start()
            self.task = self.bar.add_task(
                "tune", total=report.total_steps, stats="", completed=report.step - 1
            )
        stats = f"loss {report.loss:.4f}"
        if self.eval_loss is not None:
            stats += f" eval {self.eval_loss:.4f}"
        if report.reward_margin is not None:
            stats += f" margin {report.reward_margin:.3f} acc {report.reward_accuracy:.2f}"
        stats += f" lr {report.lr:.2e} {report.tokens_per_s:.0f} tok/s"
        self.bar.update(self.task, completed=report.step, stats=stats)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def export_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A tuned model (hearth tune --name)."),
    fmt: str = typer.Option(
        "peft",
        "--format",
        help="peft (adapter_config.json + adapter_model.safetensors), gguf-lora (llama.cpp --lora), or the adapter merged: gguf / safetensors (the base's format).",
    ),
    output: Path = typer.Option(..., "--output", help="Folder to write."),
) -> None:
    """Export a tuned model's adapter for other runtimes."""
    from hearth.tune.export import export

    written = export(name, fmt, output, warn=Output.warning)
    out = Output.of(ctx)
    if out.json:
        out.emit_json({"name": name, "format": fmt, "files": [str(p) for p in written]})
    else:
        for path in written:
            out.console.print(f"wrote {path}", highlight=False)


def merge_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A tuned model (hearth tune --name)."),
    new_name: str | None = typer.Option(
        None, "--name", help="Name of the merged model (default NAME-merged)."
    ),
    accept_license: bool = typer.Option(
        False, "--accept-license", help="Record acceptance of the base's license terms."
    ),
) -> None:
    """Fold a tuned model's adapter into its base: a plain model run and serve can use."""
    from hearth.tune.api import merge

    record = merge(name, new_name, accept_license=accept_license)
    out = Output.of(ctx)
    if out.json:
        out.emit_json(record.summary())
    else:
        out.console.print(
            f"stored [bold]{record.name}[/] ({record.format}, {record.size / 1e6:.1f} MB)",
            highlight=False,
        )
