"""Arena verbs: `hearth arena` (a blind battle in the terminal), `hearth arena leaderboard`,
`hearth arena import FILE`, `hearth arena export`. Parses, calls hearth.arena, prints;
everything heavy is imported inside the commands so the CLI starts fast."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hearth.cli.output import Output
from hearth.errors import UserInputError

if TYPE_CHECKING:
    from hearth.arena.ratings import Leaderboard, RatingConfig


def rating_config(both_bad: str, style_control: bool, rounds: int, seed: int) -> RatingConfig:
    from hearth.arena.ratings import RatingConfig

    try:
        return RatingConfig(
            both_bad=both_bad, style_control=style_control, num_rounds=rounds, seed=seed
        )
    except ValueError as exc:
        raise UserInputError(str(exc).replace("both_bad", "--both-bad")) from exc


def _ci(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "-"
    return f"{low:.0f} .. {high:.0f}"


def print_leaderboard(out: Output, board: Leaderboard) -> None:
    if out.json:
        out.emit_json([r.as_dict() for r in board.ratings])
        return
    if not board.ratings:
        out.console.print(
            "no rated battles yet: `hearth arena` runs one, `hearth arena import` reads some"
        )
        return
    from rich.table import Table

    style = " (style control)" if board.config.style_control else ""
    table = Table(title=f"arena leaderboard{style}: {board.num_battles} rated battles")
    for col in ("rank", "model", "rating", "95% CI", "battles", "win rate", "note"):
        table.add_column(col, justify="right" if col in ("rank", "rating", "battles") else "left")
    for r in board.ratings:
        table.add_row(
            "-" if r.rank is None else str(r.rank),
            r.model,
            f"{r.rating:.0f}",
            _ci(r.ci_low, r.ci_high),
            str(r.battles),
            "-" if r.win_rate is None else f"{100 * r.win_rate:.0f}%",
            r.note,
        )
    out.console.print(table)
    for name, coef in board.style_coefficients.items():
        out.console.print(f"style coefficient {name}: {coef:+.3f}")


def _store_names(settings: Any) -> set[str]:
    from hearth.store.store import Store

    names: set[str] = set()
    for record in Store(settings).list():
        names.add(record.name)
        names.add(record.name.split(":")[0])  # "smollm2" means "smollm2:latest"
    return names


def battle(
    ctx: typer.Context,
    models: list[str] | None = typer.Option(
        None, "--model", "-m", help="A model that may be drawn (repeat; default: all stored)."
    ),
    prompt_file: Path | None = typer.Option(
        None,
        "--prompts",
        help="Draw prompts from this JSONL (MT-Bench's `turns`, or `prompt` / `text`).",
    ),
    max_tokens: int = typer.Option(256, "--max-tokens", help="Longest answer, in tokens."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for the pair draw and sampling."),
) -> None:
    """A blind battle: a prompt, two anonymous models, both answers side by side, your
    vote (A, B, tie, both bad), then the names. Multi-turn continues the same pair."""
    if ctx.invoked_subcommand is not None:
        return
    from hearth.cli.arena_terminal import run_terminal_battles

    if max_tokens < 1:
        raise UserInputError(f"--max-tokens must be >= 1, got {max_tokens}")
    run_terminal_battles(Output.of(ctx), models or [], prompt_file, max_tokens, seed)


def leaderboard_cmd(
    ctx: typer.Context,
    json_flag: bool = typer.Option(False, "--json", help="JSON output."),
    style_control: bool = typer.Option(
        False, "--style-control", help="Control for answer length and markdown (FastChat's)."
    ),
    both_bad: str = typer.Option(
        "tie", "--both-bad", help="Rate 'both bad' votes as a tie, or as a loss for both."
    ),
    judged: str = typer.Option("people", "--votes", help="Whose votes: people, judge or all."),
    rounds: int = typer.Option(100, "--bootstrap", help="Bootstrap rounds for the intervals."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
) -> None:
    """Ratings (Bradley-Terry, as Chatbot Arena computes them) with 95% intervals."""
    from hearth.arena.battles import BattleStore
    from hearth.arena.ratings import leaderboard
    from hearth.config import load_settings

    choice = {"people": False, "judge": True, "all": None}
    if judged not in choice:
        raise UserInputError(f"--votes must be people, judge or all, got '{judged}'")
    cfg = rating_config(both_bad, style_control, rounds, seed)
    outcomes = BattleStore(load_settings().db_url).rated(judged=choice[judged])
    print_leaderboard(Output.of(ctx, json_flag), leaderboard(outcomes, cfg))


def import_cmd(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="FastChat battles: a JSON list or JSONL."),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Import the good rows and skip the bad ones (counted)."
    ),
    any_model: bool = typer.Option(
        False, "--any-model", help="Accept models that are not in the store."
    ),
) -> None:
    """Read battles you already have (FastChat's format) so they are rated too."""
    from hearth.arena.battles import BattleStore
    from hearth.arena.fastchat_format import parse_battles
    from hearth.config import load_settings

    out = Output.of(ctx)
    if not file.is_file():
        raise UserInputError(f"no such file: {file}")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(f"{file} is not UTF-8 text") from exc
    settings = load_settings()
    known = None
    if not any_model:
        names = _store_names(settings)
        known = names.__contains__
    good, bad = parse_battles(text, known)
    if bad and not skip_bad:
        shown = "; ".join(str(b) for b in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise UserInputError(
            f"{file}: {len(bad)} bad row(s), nothing imported: {shown}{more}; fix them or "
            "pass --skip-bad"
        )
    count = BattleStore(settings.db_url).add_many(good)
    if out.json:
        out.emit_json({"imported": count, "skipped": len(bad)})
    else:
        skipped = f", skipped {len(bad)} bad row(s)" if bad else ""
        out.console.print(f"imported {count} battle(s){skipped}")


def export_cmd(
    fmt: str = typer.Option("fastchat", "--format", help="fastchat (JSON list) or dpo (JSONL)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="File (default: stdout)."),
) -> None:
    """Write stored battles out: FastChat's battle format, or DPO preference pairs."""
    from hearth.arena.battles import BattleStore
    from hearth.arena.fastchat_format import to_dpo, to_fastchat
    from hearth.config import load_settings

    battles = BattleStore(load_settings().db_url).all()
    if fmt == "fastchat":
        text = json.dumps(to_fastchat(battles), indent=2, ensure_ascii=False) + "\n"
    elif fmt == "dpo":
        text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in to_dpo(battles))
    else:
        raise UserInputError(f"--format must be fastchat or dpo, got '{fmt}'")
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


def register(app: typer.Typer) -> None:
    arena = typer.Typer(
        help="Blind battles between your models, and their Chatbot-Arena-style ratings.",
        invoke_without_command=True,
        no_args_is_help=False,
    )
    app.add_typer(arena, name="arena")
    arena.callback()(battle)
    arena.command("leaderboard")(leaderboard_cmd)
    arena.command("import")(import_cmd)
    arena.command("export")(export_cmd)
