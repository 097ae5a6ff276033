"""`hearth compare`'s four forms: a text table, markdown, JSON, and one self-contained HTML
file (inline CSS and inline SVG charts: no script, no CDN, opens offline)."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

from hearth.arena.compare import ApiPrice, CostModel, ModelReport

FORMATS = ("table", "markdown", "html", "json")
COLUMNS = ("model", "eval avg", "arena (95% CI)", "judge", "decode tok/s", "TTFT",
           "$/M tok here", "license", "commercial")  # fmt: skip


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _arena(r: ModelReport) -> str:
    a = r.arena
    if a is None:
        return "-"
    if a.ci_low is None or a.ci_high is None:
        return f"{a.rating:.0f} (no CI: {a.battles} battles)"
    return f"{a.rating:.0f} (+{a.ci_high - a.rating:.0f}/-{a.rating - a.ci_low:.0f})"


def _cells(r: ModelReport) -> list[str]:
    speed = r.speed
    return [
        r.model,
        _num(r.eval_average, ".1f"),
        _arena(r),
        _num(r.judge_score, ".2f"),
        "-" if speed is None else f"{speed.decode_tokens_per_s:.1f}",
        "-" if speed is None else f"{speed.ttft_s * 1000:.0f} ms",
        _num(r.cost_per_mtok, ".3f"),
        r.license_id,
        r.commercial_use + ("" if r.policy_verdict in ("", "allowed") else " (policy: refused)"),
    ]


def _notes(prices: Sequence[ApiPrice], cost: CostModel) -> list[str]:
    lines = [
        f"cost here: {cost.watts:g} W at ${cost.kwh_price:g}/kWh for the measured decode rate "
        "(set --watts and --kwh-price for your machine)",
        "hosted APIs, USD per million tokens (input / output):",
    ]
    for p in prices:
        lines.append(
            f"  {p.provider} {p.model}: {p.input_per_mtok:g} / {p.output_per_mtok:g} "
            f"(source {p.source}, as of {p.as_of})"
        )
    return lines


def _table(reports: Sequence[ModelReport], prices: Sequence[ApiPrice], cost: CostModel) -> str:
    rows = [list(COLUMNS)] + [_cells(r) for r in reports]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([*lines, "", *_notes(prices, cost)]) + "\n"


def _markdown(reports: Sequence[ModelReport], prices: Sequence[ApiPrice], cost: CostModel) -> str:
    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = [row(COLUMNS), row(["---"] * len(COLUMNS))] + [row(_cells(r)) for r in reports]
    lines += ["", f"Cost here: {cost.watts:g} W at ${cost.kwh_price:g}/kWh.", ""]
    lines += [row(["provider", "model", "input $/M", "output $/M", "source", "as of"]),
              row(["---"] * 6)]  # fmt: skip
    for p in prices:
        lines.append(row([p.provider, p.model, f"{p.input_per_mtok:g}", f"{p.output_per_mtok:g}",
                          p.source, p.as_of]))  # fmt: skip
    return "\n".join(lines) + "\n"


def _json(reports: Sequence[ModelReport], prices: Sequence[ApiPrice], cost: CostModel) -> str:
    doc = {
        "models": [r.as_dict() for r in reports],
        "cost_model": {"watts": cost.watts, "kwh_price_usd": cost.kwh_price},
        "api_prices": [p.__dict__ for p in prices],
    }
    return json.dumps(doc, indent=2) + "\n"


def _bar_chart(
    title: str,
    items: list[tuple[str, float, float | None, float | None]],
    unit: str,
    from_zero: bool = True,
) -> str:
    """Horizontal bars (value) with optional interval whiskers (low, high), as inline SVG.
    `from_zero=False` starts the axis just below the lowest interval (ratings around 1000
    differ by tens of points: bars from 0 would hide that)."""
    if not items:
        return ""
    top = max(max(v, hi or v) for _, v, _, hi in items)
    lowest = min(min(v, lo or v) for _, v, lo, _ in items)
    bottom = min(0.0, lowest) if from_zero else 50.0 * (lowest // 50.0) - 50.0
    span = (top - bottom) or 1.0
    left, width, row_h = 180, 420, 28
    height = 30 + row_h * len(items)

    def x(value: float) -> float:
        return left + (value - bottom) / span * width

    parts = [f'<svg class="chart" role="img" aria-label="{html.escape(title)}" xmlns="http://www.w3.org/2000/svg" '
             f'width="{left + width + 80}" height="{height}">',
             f'<text x="4" y="16" font-weight="bold">{html.escape(title)}</text>']  # fmt: skip
    for i, (label, value, lo, hi) in enumerate(items):
        y = 26 + i * row_h
        parts.append(f'<text x="4" y="{y + 15}">{html.escape(label)}</text>')
        parts.append(f'<rect class="bar" x="{x(bottom):.1f}" y="{y + 3}" width="{x(value) - x(bottom):.1f}" '
                     f'height="16" fill="#4a78b5"/>')  # fmt: skip
        if lo is not None and hi is not None:
            parts.append(f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{y + 11}" y2="{y + 11}" '
                         'stroke="#222" stroke-width="2"/>')  # fmt: skip
        parts.append(
            f'<text x="{x(max(value, hi or value)) + 6:.1f}" y="{y + 15}">{value:.1f}{unit}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _html(reports: Sequence[ModelReport], prices: Sequence[ApiPrice], cost: CostModel) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in COLUMNS)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{e(c)}</td>" for c in _cells(r)) + "</tr>" for r in reports
    )
    Bar = tuple[str, float, float | None, float | None]
    arena: list[Bar] = [
        (r.model, r.arena.rating, r.arena.ci_low, r.arena.ci_high) for r in reports if r.arena
    ]
    speed: list[Bar] = [
        (r.model, r.speed.decode_tokens_per_s, None, None) for r in reports if r.speed
    ]
    evals: list[Bar] = [
        (r.model, r.eval_average, None, None) for r in reports if r.eval_average is not None
    ]
    charts = [
        _bar_chart("Arena rating (95% CI)", arena, "", from_zero=False),
        _bar_chart("Decode tokens/s on this machine", speed, ""),
        _bar_chart("Eval average (%)", evals, "%"),
    ]
    price_rows = "\n".join(
        f"<tr><td>{e(p.provider)}</td><td>{e(p.model)}</td><td>{p.input_per_mtok:g}</td>"
        f"<td>{p.output_per_mtok:g}</td><td>{e(p.source)}</td><td>{e(p.as_of)}</td></tr>"
        for p in prices
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hearth compare</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
th {{ background: #f0f0f0; }}
svg text {{ font-size: 13px; font-family: system-ui, sans-serif; }}
</style></head><body>
<h1>hearth compare</h1>
<table id="models"><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table>
{"".join(charts)}
<p>Cost here: {cost.watts:g} W at ${cost.kwh_price:g}/kWh for the measured decode rate.</p>
<h2>Hosted APIs (USD per million tokens)</h2>
<table id="prices"><thead><tr><th>provider</th><th>model</th><th>input</th><th>output</th>
<th>source</th><th>as of</th></tr></thead><tbody>
{price_rows}
</tbody></table>
</body></html>
"""


def render(
    reports: Sequence[ModelReport], prices: Sequence[ApiPrice], cost: CostModel, fmt: str
) -> str:
    renderers = {"table": _table, "markdown": _markdown, "html": _html, "json": _json}
    return renderers[fmt](reports, prices, cost)
