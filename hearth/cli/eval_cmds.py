"""Evaluation verbs: `hearth eval` (run benchmark tasks on a model, store the run) and
`hearth leaderboard` (the table across stored runs). Parses, calls hearth.eval, prints;
everything heavy is imported inside the commands so the CLI starts fast."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hearth.cli.output import Output
from hearth.errors import InvalidParameterError, OptionalDependencyError, UserInputError
from hearth.model.quant_modes import QUANT_MODES, REFERENCE_QUANT

if TYPE_CHECKING:
    from hearth.config import Settings
    from hearth.eval.lm import LanguageModel
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


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        ctx: typer.Context,
        model: str = typer.Argument(
            ...,
            help="Model to evaluate (a stored model name; with --backend openai, the name the run is stored under).",
        ),
        tasks: str = typer.Option(
            "leaderboard",
            "--tasks",
            "-t",
            help="Comma-separated tasks, or 'leaderboard' for all six.",
        ),
        limit: int | None = typer.Option(
            None,
            "--limit",
            help="Score only the first N items of each task (of each subject for mmlu).",
        ),
        num_fewshot: int | None = typer.Option(
            None,
            "--num-fewshot",
            help="Few-shot examples (default: each task's leaderboard setting).",
        ),
        seed: int = typer.Option(
            1234, "--seed", help="Few-shot sampling seed (lm-eval's default 1234)."
        ),
        max_gen_tokens: int | None = typer.Option(
            None,
            "--max-gen-tokens",
            help="Cap on generated tokens for generative tasks (default 256).",
        ),
        json_flag: bool = typer.Option(False, "--json", help="JSON output."),
        output: Path | None = typer.Option(
            None, "--output", "-o", help="Also write the results as JSON to this file."
        ),
        log_samples: bool = typer.Option(
            False,
            "--log-samples",
            help="Save per-item prompts, predictions and scores (JSONL under $HEARTH_HOME/eval-samples).",
        ),
        resume: bool = typer.Option(
            False, "--resume", help="Continue the latest interrupted run with the same settings."
        ),
        backend: str = typer.Option(
            "hearth",
            "--backend",
            help="hearth (the local engine) or openai (an OpenAI-compatible server).",
        ),
        base_url: str | None = typer.Option(
            None,
            "--base-url",
            help="Server URL for --backend openai, e.g. http://127.0.0.1:8000/v1.",
        ),
        server_model: str | None = typer.Option(
            None, "--model", help="The server's model name for --backend openai (default: MODEL)."
        ),
        data_dir: Path | None = typer.Option(
            None,
            "--data-dir",
            help="Evaluation data folder (default: $HEARTH_EVAL_DATA or $HEARTH_HOME/eval-data; `hearth data pull leaderboard` fills it).",
        ),
        batch_size: int = typer.Option(
            16, "--batch-size", help="Prompts per HTTP request (--backend openai)."
        ),
        quant: str = typer.Option(
            REFERENCE_QUANT,
            "--quant",
            help="Weights as none (de-quantized: the reference lm-eval is checked against, "
            "hence the default here, unlike run/serve), auto, int8 or int4; a quantized run "
            "gets its own leaderboard row.",
        ),
    ) -> None:
        """Run benchmark tasks (Open LLM Leaderboard v1) on a model and store the run."""
        out = Output.of(ctx, json_flag)
        if limit is not None and limit <= 0:
            raise InvalidParameterError(
                "limit", f"--limit must be a positive number of items, got {limit}"
            )
        if num_fewshot is not None and num_fewshot < 0:
            raise InvalidParameterError(
                "num_fewshot", f"--num-fewshot must be >= 0, got {num_fewshot}"
            )
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
            raise UserInputError(
                "--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)"
            )
        if backend == "openai" and quant != REFERENCE_QUANT:
            raise UserInputError(
                "--quant applies to hearth's own engine; with --backend openai the server "
                "decides how its weights run (e.g. `hearth serve --quant int4`)"
            )

        from hearth.config import load_settings
        from hearth.eval.data import resolve_data_dir
        from hearth.eval.results import ResultStore, RunSpec
        from hearth.eval.runner import run_task
        from hearth.eval.tasks import Settings as TaskSettings
        from hearth.eval.tasks import resolve_tasks

        task_list = resolve_tasks(tasks)
        settings = load_settings()
        root = resolve_data_dir(data_dir, settings.home)
        for task in task_list:
            task.check_files(root)

        lm: LanguageModel
        if backend == "openai":
            assert base_url  # checked above
            from hearth.eval.backends.openai_backend import OpenAICompletionsLM, OpenAIConfig

            try:
                config = OpenAIConfig(
                    base_url=base_url, model=server_model or model, batch_size=batch_size
                )
            except ValueError as exc:
                raise UserInputError(str(exc)) from exc
            lm = OpenAICompletionsLM(config)
            digest = ""
        else:
            lm = _engine_lm(model, quant)
            digest = _digest(settings, model)

        store = ResultStore(settings.db_url)
        samples_dir = settings.home / "eval-samples" if log_samples else None
        reports: list[TaskReport] = []

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

        def _run_one(task: Any) -> TaskReport:
            shots = task.num_fewshot if num_fewshot is None else num_fewshot
            task_settings = TaskSettings(
                num_fewshot=shots, seed=seed, limit=limit, max_gen_tokens=max_gen_tokens
            )
            spec = RunSpec(
                model_name=model,
                task=task.name,
                num_fewshot=shots,
                seed=seed,
                limit=limit,
                max_gen_tokens=max_gen_tokens,
                model_digest=digest,
                backend=backend,
                quant=quant,
            )
            return run_task(
                lm,
                task,
                root,
                task_settings,
                spec,
                store,
                resume=resume,
                samples_dir=samples_dir,
                progress=on_progress,
            )

        try:
            with progress:
                for task in task_list:
                    reports.append(_run_one(task))
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

        data = [_report_json(r) for r in reports]
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(json.dumps(data, indent=2) + "\n")
        if out.json:
            out.emit_json(data)
            return
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

    @app.command("leaderboard")
    def leaderboard_cmd(
        ctx: typer.Context,
        fmt: str = typer.Option("table", "--format", "-f", help="table, csv, json or markdown."),
        json_flag: bool = typer.Option(False, "--json", help="Same as --format json."),
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
