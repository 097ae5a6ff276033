"""The local leaderboard: one row per model (name + digest + weight mode), one column per Open LLM
Leaderboard v1 task with its leaderboard metric in percent, and their average, taken
from the latest complete stored run of each task. A row is marked when any of its runs
used settings other than the leaderboard's (fewer shots, a --limit, another seed); the
average is only given when all six tasks are there. Renders CSV, JSON and markdown.

Knows nothing of how runs were scored; reads RunRecords only."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

from hearth.eval.results import RunRecord
from hearth.eval.tasks import LEADERBOARD, TASKS
from hearth.eval.tasks.base import DEFAULT_SEED

FORMATS = ("table", "csv", "json", "markdown")


@dataclass(frozen=True)
class LeaderboardRow:
    model_name: str
    model_digest: str
    scores: dict[str, float | None]  # task -> percent
    average: float | None
    differences: tuple[str, ...]  # how this row's settings differ from the leaderboard's
    quant: str = "none"  # the engine's weight mode: a quantized run is its own row

    @property
    def label(self) -> str:
        return self.model_name if self.quant == "none" else f"{self.model_name} ({self.quant})"

    @property
    def standard(self) -> bool:
        return not self.differences


def _differences(run: RunRecord) -> list[str]:
    task = TASKS[run.spec.task]
    out = []
    if run.spec.num_fewshot != task.num_fewshot:
        out.append(f"{task.name} {run.spec.num_fewshot}-shot (leaderboard: {task.num_fewshot})")
    if run.spec.limit is not None:
        out.append(f"{task.name} limit {run.spec.limit}")
    if run.spec.seed != DEFAULT_SEED:
        out.append(f"{task.name} seed {run.spec.seed}")
    if run.spec.max_gen_tokens is not None:
        out.append(f"{task.name} max_gen_tokens {run.spec.max_gen_tokens}")
    return out


def leaderboard_rows(runs: Sequence[RunRecord]) -> list[LeaderboardRow]:
    """Rows sorted by average (rows without one last), then by name."""
    latest: dict[tuple[str, str, str], dict[str, RunRecord]] = {}
    for run in runs:
        if run.status != "complete" or run.spec.task not in TASKS:
            continue
        key = (run.spec.model_name, run.spec.model_digest, run.spec.quant)
        per_task = latest.setdefault(key, {})
        if run.spec.task not in per_task or run.id > per_task[run.spec.task].id:
            per_task[run.spec.task] = run
    rows = []
    for (name, digest, quant), per_task in latest.items():
        scores: dict[str, float | None] = {}
        differences: list[str] = []
        for task_name in LEADERBOARD:
            task_run = per_task.get(task_name)
            task = TASKS[task_name]
            found = task_run.metric(task.primary_metric, task.primary_subtask) if task_run else None
            scores[task_name] = 100.0 * found.value if found else None
            if task_run:
                differences += _differences(task_run)
        values = [v for v in scores.values() if v is not None]
        average = sum(values) / len(values) if len(values) == len(LEADERBOARD) else None
        rows.append(LeaderboardRow(name, digest, scores, average, tuple(differences), quant))
    rows.sort(key=lambda r: (r.average is None, -(r.average or 0.0), r.model_name))
    return rows


def header() -> list[str]:
    return ["model", "digest", *LEADERBOARD, "average", "leaderboard settings"]


def cells(row: LeaderboardRow) -> list[str]:
    def fmt(v: float | None) -> str:
        return "" if v is None else f"{v:.2f}"

    return [
        row.label + ("" if row.standard else " *"),
        row.model_digest[:19],
        *(fmt(row.scores[t]) for t in LEADERBOARD),
        fmt(row.average),
        "yes" if row.standard else "no: " + "; ".join(row.differences),
    ]


def render(rows: Sequence[LeaderboardRow], fmt: str) -> str:
    """CSV, JSON or markdown text of the rows ("table" is drawn by the CLI with rich)."""
    if fmt == "json":
        return json.dumps(
            [
                {
                    "model": r.model_name,
                    "digest": r.model_digest,
                    "quant": r.quant,
                    "scores": r.scores,
                    "average": r.average,
                    "leaderboard_settings": r.standard,
                    "differences": list(r.differences),
                }
                for r in rows
            ],
            indent=2,
        )
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header())
        writer.writerows(cells(r) for r in rows)
        return buf.getvalue()
    if fmt == "markdown":
        lines = ["| " + " | ".join(header()) + " |", "|" + "---|" * len(header())]
        for r in rows:
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells(r)) + " |")
        if any(not r.standard for r in rows):
            lines.append("")
            lines.append("\\* settings differ from the Open LLM Leaderboard v1's")
        return "\n".join(lines) + "\n"
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
