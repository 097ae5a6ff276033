"""The task table: one module per task family, one entry per task name, and the name
`leaderboard` for the six Open LLM Leaderboard v1 tasks. Knows nothing of models."""

from __future__ import annotations

from hearth.errors import UserInputError
from hearth.eval.tasks.arc import ArcChallenge
from hearth.eval.tasks.base import Item, MetricResult, Scored, Settings, Task
from hearth.eval.tasks.gsm8k import Gsm8k
from hearth.eval.tasks.hellaswag import Hellaswag
from hearth.eval.tasks.mmlu import Mmlu
from hearth.eval.tasks.truthfulqa import TruthfulqaMc2
from hearth.eval.tasks.winogrande import Winogrande

__all__ = [
    "LEADERBOARD",
    "TASKS",
    "Item",
    "MetricResult",
    "Scored",
    "Settings",
    "Task",
    "get_task",
    "resolve_tasks",
]

TASKS: dict[str, type[Task]] = {
    t.name: t for t in (ArcChallenge, Hellaswag, Mmlu, TruthfulqaMc2, Winogrande, Gsm8k)
}
LEADERBOARD = tuple(TASKS)  # the v1 leaderboard's order


def get_task(name: str) -> Task:
    try:
        return TASKS[name]()
    except KeyError:
        raise UserInputError(
            f"unknown task '{name}'; known tasks: {', '.join(TASKS)} (or 'leaderboard' for all six)"
        ) from None


def resolve_tasks(spec: str) -> list[Task]:
    """Tasks named by a comma-separated list; `leaderboard` means all six."""
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        for name in LEADERBOARD if part == "leaderboard" else (part,):
            if name not in names:
                names.append(name)
    if not names:
        raise UserInputError(f"no task given; known tasks: {', '.join(TASKS)} or 'leaderboard'")
    return [get_task(n) for n in names]
