"""Evaluation verbs: `hearth eval` (run benchmark tasks on a model, store the run) and
`hearth leaderboard` (the table across stored runs). Parses, calls hearth.eval, prints;
everything heavy is imported inside the commands so the CLI starts fast."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hearth.cli.output import Output
from hearth.errors import InvalidParameterError, OptionalDependencyError, UserInputError
from hearth.model.quant_modes import QUANT_MODES, REFERENCE_QUANT

if TYPE_CHECKING:
    from rich.progress import Progress

    from hearth.config import Settings
    from hearth.eval.lm import LanguageModel
    from hearth.eval.results import ResultStore
    from hearth.eval.runner import TaskReport


EVAL_STEP_TOKENS = 2048


def _engine_lm(model: str, quant: str) -> LanguageModel:
    try:
        from hearth.engine.llm import LLM  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise OptionalDependencyError(
            "hearth's engine (hearth.engine.llm) is not available in this build; evaluate "
            "through a server instead: --backend openai --base-url URL --model NAME"
        ) from exc
    from hearth.eval.backends.engine_backend import EngineLM

    # scoring is prefill: 2,048-token steps keep most prompts in one chunk (no masked
    # attention over a cached part) and widen the matmuls: fp32 prefill of ~900-token
    # prompts 564 -> 642 tokens/s on 2 cores (transformers' forward: 599-656)
    return EngineLM.from_llm(LLM(model, quant=quant, max_num_batched_tokens=EVAL_STEP_TOKENS))


def _digest(settings: Settings, model: str) -> str:
    """The store's digest for MODEL, "" when it is not a stored model name."""
    try:
        from hearth.store.store import Store

        return Store(settings).get(model).digest
    except Exception:  # not in the store (a path, a server's model): no digest to record
        return ""


def _report_json(report: TaskReport) -> dict[str, Any]:
    return {
        "task": report.task,
        "run_id": report.run_id,
        "model": report.spec.model_name,
        "quant": report.spec.quant,
        "model_digest": report.spec.model_digest,
        "backend": report.spec.backend,
        "num_fewshot": report.spec.num_fewshot,
        "limit": report.spec.limit,
        "seed": report.spec.seed,
        "num_items": report.num_items,
        "num_resumed": report.num_resumed,
        "duration_s": round(report.duration_s, 3),
        "items_per_s": round(report.items_per_s, 3) if report.duration_s > 0 else None,
        "samples_path": report.samples_path,
        "results": [
            {
                "metric": r.metric,
                "subtask": r.subtask,
                "value": r.value,
                "stderr": r.stderr,
                "num_items": r.num_items,
            }
            for r in report.results
        ],
    }


# the options of `hearth eval`, declared once here so the command's signature stays short
ModelArg = Annotated[
    str,
    typer.Argument(
        help="Model to evaluate (a stored model name; with --backend openai, the name the run is stored under)."
    ),
]
TasksOpt = Annotated[
    str, typer.Option("--tasks", "-t", help="Comma-separated tasks, or 'leaderboard' for all six.")
]
LimitOpt = Annotated[
    int | None,
    typer.Option(
        "--limit", help="Score only the first N items of each task (of each subject for mmlu)."
    ),
]
FewshotOpt = Annotated[
    int | None,
    typer.Option(
        "--num-fewshot", help="Few-shot examples (default: each task's leaderboard setting)."
    ),
]
SeedOpt = Annotated[
    int, typer.Option("--seed", help="Few-shot sampling seed (lm-eval's default 1234).")
]
MaxGenOpt = Annotated[
    int | None,
    typer.Option(
        "--max-gen-tokens", help="Cap on generated tokens for generative tasks (default 256)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON output.")]
OutputOpt = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Also write the results as JSON to this file."),
]
LogSamplesOpt = Annotated[
    bool,
    typer.Option(
        "--log-samples",
        help="Save per-item prompts, predictions and scores (JSONL under $HEARTH_HOME/eval-samples).",
    ),
]
ResumeOpt = Annotated[
    bool,
    typer.Option("--resume", help="Continue the latest interrupted run with the same settings."),
]
BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend", help="hearth (the local engine) or openai (an OpenAI-compatible server)."
    ),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--base-url", help="Server URL for --backend openai, e.g. http://127.0.0.1:8000/v1."
    ),
]
ServerModelOpt = Annotated[
    str | None,
    typer.Option("--model", help="The server's model name for --backend openai (default: MODEL)."),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Evaluation data folder (default: $HEARTH_EVAL_DATA or $HEARTH_HOME/eval-data; `hearth data pull leaderboard` fills it).",
    ),
]
BatchSizeOpt = Annotated[
    int, typer.Option("--batch-size", help="Prompts per HTTP request (--backend openai).")
]
QuantOpt = Annotated[
    str,
    typer.Option(
        "--quant",
        help="Weights as none (de-quantized: the reference lm-eval is checked against, "
        "hence the default here, unlike run/serve), auto, int8 or int4; a quantized run "
        "gets its own leaderboard row.",
    ),
]


@dataclass(frozen=True)
class _EvalRun:
    """What one `hearth eval` asks for, after its arguments were checked."""

    model: str
    limit: int | None
    num_fewshot: int | None
    seed: int
    max_gen_tokens: int | None
    backend: str
    quant: str
    resume: bool


def _check_args(
    limit: int | None,
    num_fewshot: int | None,
    max_gen_tokens: int | None,
    backend: str,
    quant: str,
    base_url: str | None,
) -> None:
    if limit is not None and limit <= 0:
        raise InvalidParameterError(
            "limit", f"--limit must be a positive number of items, got {limit}"
        )
    if num_fewshot is not None and num_fewshot < 0:
        raise InvalidParameterError("num_fewshot", f"--num-fewshot must be >= 0, got {num_fewshot}")
    if max_gen_tokens is not None and max_gen_tokens < 1:
        raise InvalidParameterError(
            "max_gen_tokens", f"--max-gen-tokens must be >= 1, got {max_gen_tokens}"
        )
    if backend not in ("hearth", "openai"):
        raise UserInputError(f"--backend must be 'hearth' or 'openai', got '{backend}'")
    if quant not in QUANT_MODES:
        raise InvalidParameterError(
            "quant", f"--quant must be one of {', '.join(QUANT_MODES)}, got '{quant}'"
        )
    # the missing flag before the missing data: it is the first thing to fix
    if backend == "openai" and not base_url:
        raise UserInputError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
    if backend == "openai" and quant != REFERENCE_QUANT:
        raise UserInputError(
            "--quant applies to hearth's own engine; with --backend openai the server "
            "decides how its weights run (e.g. `hearth serve --quant int4`)"
        )


def _openai_lm(
    model: str, base_url: str, server_model: str | None, batch_size: int
) -> LanguageModel:
    from hearth.eval.backends.openai_backend import OpenAICompletionsLM, OpenAIConfig

    try:
        config = OpenAIConfig(base_url=base_url, model=server_model or model, batch_size=batch_size)
    except ValueError as exc:
        raise UserInputError(str(exc)) from exc
    return OpenAICompletionsLM(config)


def _progress(out: Output) -> tuple[Progress, Any]:
    """A progress display on stderr and the callback run_task reports to."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=out.json,
    )
    bars: dict[str, Any] = {}

    def on_progress(name: str, done: int, total: int) -> None:
        if name not in bars:
            bars[name] = progress.add_task(name, total=total)
        progress.update(bars[name], completed=done, total=total)

    return progress, on_progress


def _run_tasks(
    run: _EvalRun,
    lm: LanguageModel,
    task_list: list[Any],
    root: Path,
    store: ResultStore,
    digest: str,
    samples_dir: Path | None,
    out: Output,
) -> list[TaskReport]:
    """Every task in turn; an interrupt keeps what was scored and says how to resume."""
    from hearth.eval.results import RunSpec
    from hearth.eval.runner import run_task
    from hearth.eval.tasks import Settings as TaskSettings

    progress, on_progress = _progress(out)
    reports: list[TaskReport] = []
    try:
        with progress:
            for task in task_list:
                shots = task.num_fewshot if run.num_fewshot is None else run.num_fewshot
                task_settings = TaskSettings(
                    num_fewshot=shots,
                    seed=run.seed,
                    limit=run.limit,
                    max_gen_tokens=run.max_gen_tokens,
                )
                spec = RunSpec(
                    model_name=run.model,
                    task=task.name,
                    num_fewshot=shots,
                    seed=run.seed,
                    limit=run.limit,
                    max_gen_tokens=run.max_gen_tokens,
                    model_digest=digest,
                    backend=run.backend,
                    quant=run.quant,
                )
                reports.append(
                    run_task(
                        lm,
                        task,
                        root,
                        task_settings,
                        spec,
                        store,
                        resume=run.resume,
                        samples_dir=samples_dir,
                        progress=on_progress,
                    )
                )
    except KeyboardInterrupt:
        Output.error(
            "interrupted: the items scored so far are stored; rerun the same command "
            "with --resume to continue"
        )
        raise typer.Exit(130) from None
    finally:
        close = getattr(lm, "close", None)
        if close is not None:
            close()  # the HTTP client's connections
    return reports


def _print_reports(out: Output, reports: list[TaskReport]) -> None:
    from rich.table import Table

    table = Table("task", "metric", "filter", "value", "± stderr", "items", "items/s")
    for r in reports:
        for m in r.results:
            if r.task == "mmlu" and m.subtask:
                continue  # 57 subjects: in --json / --output
            table.add_row(
                r.task,
                m.metric,
                m.subtask,
                f"{100 * m.value:.2f}",
                "" if m.stderr is None else f"{100 * m.stderr:.2f}",
                str(m.num_items),
                f"{r.items_per_s:.2f}" if r.duration_s > 0 else "",
            )
    out.console.print(table)


def eval_cmd(
    ctx: typer.Context,
    model: ModelArg,
    tasks: TasksOpt = "leaderboard",
    limit: LimitOpt = None,
    num_fewshot: FewshotOpt = None,
    seed: SeedOpt = 1234,
    max_gen_tokens: MaxGenOpt = None,
    json_flag: JsonOpt = False,
    output: OutputOpt = None,
    log_samples: LogSamplesOpt = False,
    resume: ResumeOpt = False,
    backend: BackendOpt = "hearth",
    base_url: BaseUrlOpt = None,
    server_model: ServerModelOpt = None,
    data_dir: DataDirOpt = None,
    batch_size: BatchSizeOpt = 16,
    quant: QuantOpt = REFERENCE_QUANT,
) -> None:
    """Run benchmark tasks (Open LLM Leaderboard v1) on a model and store the run."""
    out = Output.of(ctx, json_flag)
    _check_args(limit, num_fewshot, max_gen_tokens, backend, quant, base_url)
    from hearth.config import load_settings
    from hearth.eval.data import resolve_data_dir
    from hearth.eval.results import ResultStore
    from hearth.eval.tasks import resolve_tasks

    task_list = resolve_tasks(tasks)
    settings = load_settings()
    root = resolve_data_dir(data_dir, settings)
    for task in task_list:
        task.check_files(root)
    lm: LanguageModel
    if backend == "openai":
        assert base_url  # checked above
        lm, digest = _openai_lm(model, base_url, server_model, batch_size), ""
    else:
        lm, digest = _engine_lm(model, quant), _digest(settings, model)
    run = _EvalRun(model, limit, num_fewshot, seed, max_gen_tokens, backend, quant, resume)
    samples_dir = settings.home / "eval-samples" if log_samples else None
    store = ResultStore(settings.db_url)
    reports = _run_tasks(run, lm, list(task_list), root, store, digest, samples_dir, out)
    data = [_report_json(r) for r in reports]
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(data, indent=2) + "\n")
    if out.json:
        out.emit_json(data)
    else:
        _print_reports(out, reports)


def leaderboard_cmd(
    ctx: typer.Context,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="table, csv, json or markdown.")
    ] = "table",
    json_flag: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
) -> None:
    """The leaderboard across locally evaluated models (one column per task + average)."""
    from hearth.config import load_settings
    from hearth.eval.leaderboard import FORMATS, cells, header, leaderboard_rows, render
    from hearth.eval.results import ResultStore

    out = Output.of(ctx, json_flag)
    if out.json:
        fmt = "json"
    if fmt not in FORMATS:
        raise UserInputError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    rows = leaderboard_rows(ResultStore(load_settings().db_url).runs())
    if fmt != "table":
        typer.echo(render(rows, fmt), nl=False)
        return
    if not rows:
        out.console.print(
            "no evaluation runs yet; `hearth eval MODEL --tasks leaderboard` makes one"
        )
        return
    from rich.table import Table

    table = Table(*header())
    for row in rows:
        table.add_row(*cells(row))
    out.console.print(table)
    if any(not r.standard for r in rows):
        out.console.print("* settings differ from the Open LLM Leaderboard v1's")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("leaderboard")(leaderboard_cmd)
