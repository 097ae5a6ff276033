"""`hearth judge`: MT-Bench grading of stored models by a judge model (a store model, or
any OpenAI-compatible server with --judge-url). Parses, calls hearth.arena.judge, prints."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from hearth.cli.output import Output
from hearth.errors import UserInputError

if TYPE_CHECKING:
    from hearth.arena.judge import JudgeReport
    from hearth.arena.judge_backends import LocalModel, OpenAIJudge
    from hearth.config import Settings


def judge_cmd(
    ctx: typer.Context,
    models: list[str] = typer.Option(..., "--models", "-m", help="Models to grade (repeat)."),
    questions: Path = typer.Option(..., "--questions", help="MT-Bench questions (JSONL)."),
    judge: str | None = typer.Option(None, "--judge", help="A store model as the judge."),
    judge_url: str | None = typer.Option(
        None, "--judge-url", help="An OpenAI-compatible server as the judge (…/v1)."
    ),
    judge_model: str | None = typer.Option(
        None, "--judge-model", help="The server's model name for --judge-url."
    ),
    judge_key_file: Path | None = typer.Option(
        None, "--judge-key-file", help="A file holding the --judge-url server's API key."
    ),
    references: Path | None = typer.Option(
        None, "--references", help="Reference answers (FastChat's reference_answer JSONL)."
    ),
    mode: str = typer.Option("both", "--mode", help="single, pairwise or both."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N questions."),
    max_tokens: int = typer.Option(256, "--max-tokens", help="Longest answer, in tokens."),
    judge_max_tokens: int = typer.Option(
        1024, "--judge-max-tokens", help="Longest judgment (explanation + verdict), in tokens."
    ),
    json_flag: bool = typer.Option(False, "--json", help="JSON output."),
) -> None:
    """Grade models' answers with a judge (FastChat's MT-Bench prompts): 1-10 scores per
    answer, and pairwise battles judged in both orders, rated like arena votes."""
    from hearth.arena.battles import BattleStore
    from hearth.arena.judge import JudgeRun, load_questions, run_judge
    from hearth.arena.judge_backends import LocalModel, OpenAIJudge
    from hearth.arena.judge_scores import ScoreStore
    from hearth.config import load_settings
    from hearth.engine.llm import LLM

    out = Output.of(ctx, json_flag)
    _check_args(models, judge, judge_url, judge_model, limit, max_tokens, judge_max_tokens)
    qs = load_questions(questions, references, limit)
    settings = load_settings()
    answerers = {m: LocalModel(LLM(m, settings=settings), m, max_tokens) for m in models}
    judge_impl = _judge_backend(
        settings, answerers, judge, judge_url, judge_model, judge_key_file, judge_max_tokens
    )

    def progress(msg: str) -> None:
        if not out.json:
            out.console.print(msg, highlight=False)

    run = JudgeRun(judge_impl, BattleStore(settings.db_url), ScoreStore(settings.db_url), progress)
    try:
        report = run_judge(run, dict(answerers), qs, mode)
    finally:
        if isinstance(judge_impl, OpenAIJudge):
            judge_impl.close()
    if out.json:
        out.emit_json(report.as_dict())
    else:
        _print_report(out, report)


def _check_args(
    models: list[str],
    judge: str | None,
    judge_url: str | None,
    judge_model: str | None,
    limit: int | None,
    max_tokens: int,
    judge_max_tokens: int,
) -> None:
    """Refuse a bad combination before any model loads."""
    if (judge is None) == (judge_url is None):
        raise UserInputError("give the judge: --judge MODEL (stored) or --judge-url URL")
    if judge_url is not None and not judge_model:
        raise UserInputError("--judge-url needs --judge-model (the server's model name)")
    if max_tokens < 1 or judge_max_tokens < 1:
        raise UserInputError("--max-tokens and --judge-max-tokens must be >= 1")
    if limit is not None and limit < 1:
        raise UserInputError(f"--limit must be >= 1, got {limit}")
    if len(set(models)) != len(models):
        raise UserInputError("--models names a model twice")


def _judge_backend(
    settings: Settings,
    answerers: dict[str, LocalModel],
    judge: str | None,
    judge_url: str | None,
    judge_model: str | None,
    judge_key_file: Path | None,
    judge_max_tokens: int,
) -> LocalModel | OpenAIJudge:
    """The judge: a server, or a store model (the answerer's own copy if it is one)."""
    from hearth.arena.judge_backends import LocalModel, OpenAIJudge
    from hearth.engine.llm import LLM

    if judge_url is not None:
        key = judge_key_file.read_text().strip() if judge_key_file else None
        return OpenAIJudge(judge_url, judge_model or "", key, judge_max_tokens)
    assert judge is not None  # _check_args: one of the two is given
    llm = answerers[judge].llm if judge in answerers else LLM(judge, settings=settings)
    return LocalModel(llm, judge, judge_max_tokens)


def _print_report(out: Output, report: JudgeReport) -> None:
    for model, mean in report.mean_scores().items():
        shown = "-" if mean is None else f"{mean:.2f}"
        out.console.print(f"{model}: mean score {shown} ({len(report.scores[model])} scored)")
    out.console.print(
        f"single: {report.num_single} judged, {report.malformed_single} malformed; "
        f"pairwise: {report.num_pairs} judged, {report.battles} battles stored, "
        f"{report.inconsistent} inconsistent (counted as ties), {report.malformed_pairs} malformed"
    )
    if report.malformed_single or report.malformed_pairs:
        out.console.print(
            "malformed judgments are not scored; a small local judge often misses the "
            "format: try a stronger one with --judge-url"
        )
    out.console.print("`hearth arena leaderboard --votes judge` rates the judged battles")


def register(app: typer.Typer) -> None:
    app.command("judge")(judge_cmd)
