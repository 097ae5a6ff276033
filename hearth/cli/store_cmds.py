"""Store verbs: pull, import, list, show, rm, cp, verify."""

from __future__ import annotations

import typer

from hearth.cli.output import Output


def register(app: typer.Typer) -> None:
    @app.command("list")
    def list_models(
        ctx: typer.Context,
        json_flag: bool = typer.Option(False, "--json", help="JSON output."),
    ) -> None:
        """List the models in the local store."""
        out = Output.of(ctx, json_flag)
        if out.json:
            out.emit_json([])
        else:
            out.console.print("no models yet; `hearth pull smollm2` fetches the default one")
