"""`hearth usage [--since 7d] [--by model|key|day] [--json]`: the server's usage ledger —
requests, tokens, TTFT, CPU-seconds, the energy estimate and what the same tokens would
have cost on hosted APIs (with the price table's sources and dates)."""

from __future__ import annotations

import typer
from rich.table import Table

from hearth.cli.output import Output


def usage(
    ctx: typer.Context,
    since: str = typer.Option(None, "--since", help="A span (24h, 7d, 2w) or an ISO date."),
    by: str = typer.Option(None, "--by", help="Group by model, key or day."),
    json_flag: bool = typer.Option(False, "--json"),
) -> None:
    """What the server has answered: tokens, time, CPU, energy and hosted-API cost."""
    from hearth.config import load_settings
    from hearth.serve.pricing import load_price_table
    from hearth.serve.usage import parse_since, summarize, usage_records

    settings = load_settings()
    start = parse_since(since)
    report = summarize(usage_records(settings, start), load_price_table(settings.price_table), by)
    report["since"] = start.isoformat() if start else None
    report["cpu_watts"] = settings.cpu_watts
    out = Output.of(ctx, json_flag)
    if out.json:
        out.emit_json(report)
        return
    table = Table(by or "", "requests", "prompt tok", "output tok", "TTFT", "CPU s", "Wh",
                  "hosted $")  # fmt: skip
    rows = [*report["groups"], {"group": "total", **report["totals"]}]
    for g in rows:
        ttft = g["mean_ttft_s"]
        table.add_row(
            g["group"], str(g["requests"]), str(g["prompt_tokens"]), str(g["output_tokens"]),
            f"{ttft:.3f}s" if ttft is not None else "-", f"{g['cpu_s']:.1f}",
            f"{g['energy_wh']:.3f}", _cost_range(g["hosted_cost_usd"]),
        )  # fmt: skip
    out.console.print(table)
    for model, cost in report["totals"]["hosted_cost_usd"].items():
        typer.echo(f"  on {model}: ${cost:.4f}")
    dates = sorted({p["as_of"] for p in report["prices"]})
    sources = sorted({p["source"] for p in report["prices"]})
    typer.echo(
        f"energy: {settings.cpu_watts:g} W at full load (HEARTH_CPU_WATTS) x CPU-seconds / "
        f"{settings.threads} cores; hosted prices as of {', '.join(dates)} from "
        f"{', '.join(sources)} (HEARTH_PRICE_TABLE replaces them)"
    )


def _cost_range(costs: dict[str, float]) -> str:
    if not costs:
        return "-"
    return f"{min(costs.values()):.4f}-{max(costs.values()):.4f}"


def register(app: typer.Typer) -> None:
    app.command("usage")(usage)
