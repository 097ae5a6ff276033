"""`hearth config`: every setting hearth reads, its value and where the value came from
(default, config.toml, environment). The settings themselves are declared in
`hearth.config`; this only prints them."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from hearth.cli.output import Output


def register(app: typer.Typer) -> None:
    @app.command("config")
    def config_cmd(
        ctx: typer.Context,
        json_flag: bool = typer.Option(False, "--json", help="JSON output."),
    ) -> None:
        """Show every setting: value, source (default / config.toml / environment), variable."""
        from hearth.config import resolve, shown

        out = Output.of(ctx, json_flag)
        _, rows = resolve()
        if out.json:
            out.emit_json(
                [
                    {
                        "name": r.name,
                        "value": shown(r.value),
                        "source": r.source,
                        "env": r.env,
                        "meaning": r.meaning,
                    }
                    for r in rows
                ]
            )
            return
        table = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0))
        for header in ("SETTING", "VALUE", "SOURCE", "VARIABLE", "MEANING"):
            table.add_column(header, no_wrap=header in ("SETTING", "VARIABLE"))
        for r in rows:
            value = json.dumps(shown(r.value))
            table.add_row(r.name, escape(value), escape(r.source), r.env, escape(r.meaning))
        out.console.print(table)
