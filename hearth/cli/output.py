"""How the CLI prints: rich tables for people, one JSON document with `--json`."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

# piped output has no terminal width to fit: never cut a table cell or wrap a line there,
# so what a script reads (`hearth list | grep`) is whole
_PIPED_WIDTH = 100_000


def stdout_console() -> Console:
    """Rich on a terminal; when stdout is piped, unlimited width and no wrapping."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=_PIPED_WIDTH, soft_wrap=True)


@dataclass
class Output:
    json: bool = False
    console: Console = field(default_factory=stdout_console)

    @staticmethod
    def of(ctx: typer.Context, json_flag: bool = False) -> Output:
        """The Output for this command: the global `--json` or the verb's own `--json`."""
        root = ctx.find_root().obj
        out = root if isinstance(root, Output) else Output()
        if json_flag and not out.json:
            out = Output(json=True, console=out.console)
        return out

    def emit_json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")

    @staticmethod
    def error(message: str) -> None:
        # soft_wrap: a message is one line however narrow the terminal, so it can be grepped
        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]error:[/] {escape(message)}", highlight=False
        )

    @staticmethod
    def warning(message: str) -> None:
        Console(stderr=True, soft_wrap=True).print(
            f"[bold yellow]warning:[/] {escape(message)}", highlight=False
        )
