"""Data verbs: `hearth data pull leaderboard` downloads the leaderboard tasks' data from the
Hugging Face Hub (hearth.eval.hub_data), or with `--from DIR` copies a data folder (for
offline machines), to where `hearth eval` reads it (--data-dir, $HEARTH_EVAL_DATA or
<HEARTH_HOME>/eval-data). Parses, calls hearth.eval, prints."""

from __future__ import annotations

from pathlib import Path

import typer

from hearth.cli.output import Output
from hearth.errors import UserInputError

DATASETS = ("leaderboard",)


def register(app: typer.Typer) -> None:
    data = typer.Typer(help="Evaluation data: where `hearth eval` reads it from, and getting it.",
                       no_args_is_help=True)
    app.add_typer(data, name="data")

    @data.command("pull")
    def pull(
        ctx: typer.Context,
        name: str = typer.Argument(..., help="The data set: 'leaderboard' (the six v1 tasks)."),
        source: Path | None = typer.Option(
            None, "--from", help="Copy from this folder instead of downloading (offline machines)."
        ),
        data_dir: Path | None = typer.Option(
            None, "--data-dir", help="Where to put it (default: $HEARTH_EVAL_DATA, else HEARTH_HOME/eval-data)."
        ),
    ) -> None:
        """Put an evaluation data set where `hearth eval` reads it."""
        from hearth.config import load_settings
        from hearth.eval.data import copy_data, resolve_data_dir

        out = Output.of(ctx)
        if name not in DATASETS:
            raise UserInputError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
        settings = load_settings()
        dest = resolve_data_dir(data_dir, settings)
        if source is not None:
            written = copy_data(source.expanduser(), dest)
            how = f"copied {len(written)} files from {source}"
        else:
            from hearth.eval.hub_data import pull_from_hub

            def step(what: str) -> None:
                if not out.json:
                    typer.echo(f"downloading {what}", err=True)

            written = pull_from_hub(dest, progress=step, endpoint=settings.hf_endpoint)
            how = f"wrote {len(written)} files from the Hugging Face Hub"
        if out.json:
            out.emit_json({"data_dir": str(dest), "files": [str(p) for p in written]})
        else:
            typer.echo(f"{how} to {dest}")
