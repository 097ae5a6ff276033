"""`hearth compare MODEL...`: one report of eval scores, arena rating, judge score, speed,
cost and license per model. Parses, calls hearth.arena.compare, prints."""

from __future__ import annotations

from pathlib import Path

import typer

from hearth.errors import UserInputError


def register(app: typer.Typer) -> None:
    @app.command("compare")
    def compare_cmd(
        models: list[str] = typer.Argument(..., help="Stored models to compare."),
        fmt: str = typer.Option("table", "--format", help="table, markdown, html or json."),
        output: Path | None = typer.Option(None, "--output", "-o", help="File (default: stdout)."),
        measure: bool = typer.Option(
            True,
            "--measure/--no-measure",
            help="Measure decode speed and TTFT here (loads each model).",
        ),
        watts: float = typer.Option(65.0, "--watts", help="This machine's draw while generating."),
        kwh_price: float = typer.Option(0.30, "--kwh-price", help="Electricity, USD per kWh."),
        prices: Path | None = typer.Option(
            None, "--prices", help="A hosted-API price table (TOML) instead of hearth's."
        ),
    ) -> None:
        """Compare models: evals, arena rating ± CI, judge score, speed, cost, license."""
        from hearth.arena.compare import CostModel, gather, load_prices
        from hearth.arena.compare_render import FORMATS, render
        from hearth.arena.speed import Speed
        from hearth.config import load_settings

        if fmt not in FORMATS:
            raise UserInputError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
        if not models:
            raise UserInputError("name at least one model to compare")
        try:
            cost = CostModel(watts, kwh_price)
        except ValueError as exc:
            raise UserInputError("--watts must be > 0 and --kwh-price >= 0") from exc
        table = load_prices(prices)
        settings = load_settings()

        def speed_of(name: str) -> Speed:
            from hearth.arena.speed import measure as run
            from hearth.engine.llm import LLM

            llm = LLM(name, settings=settings, max_model_len=512)
            return run(llm)

        reports = gather(models, settings, cost, speed_of if measure else None)
        text = render(reports, table, cost, fmt)
        if output is None:
            typer.echo(text, nl=False)
        else:
            output.write_text(text, encoding="utf-8")
