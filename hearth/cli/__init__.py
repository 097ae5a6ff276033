"""`hearth <verb> ...`: parses, calls one layer, prints. One module per group of verbs
(`store_cmds`, `run_cmds`, ...), each with a `register(app)`; errors from hearth's tree
are turned into a message and an exit code here, in one place.

This is a package rather than one `cli.py` so each verb group stays a small file."""

from __future__ import annotations

import importlib
import sys

import typer

from hearth import __version__
from hearth.cli.output import Output
from hearth.config import load_settings, set_omp_wait_policy
from hearth.errors import HearthError

# typer >= 0.29 runs on its own copy of click (typer._click), older ones on click itself, so
# `click.ClickException` no longer catches its usage errors; typer.BadParameter (public API)
# derives from the ClickException of whichever click typer runs on: take it from there
_CLICK_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)

# verb-group modules, in the order their verbs appear in `hearth --help`
COMMAND_MODULES = [
    "hearth.cli.store_cmds",
    "hearth.cli.create_cmds",
    "hearth.cli.run_cmds",
    "hearth.cli.embed_cmds",
    "hearth.cli.license_cmds",
    "hearth.cli.eval_cmds",
    "hearth.cli.data_cmds",
    "hearth.cli.serve_cmds",
    "hearth.cli.ps_cmds",
    "hearth.cli.usage_cmds",
    "hearth.cli.bench_cmds",
    "hearth.cli.arena_cmds",
    "hearth.cli.judge_cmds",
    "hearth.cli.compare_cmds",
    "hearth.cli.config_cmds",
    "hearth.cli.tune_cmds",
]

app = typer.Typer(
    name="hearth",
    help="Open-weight language models on your own hardware, offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hearth {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    json_output: bool = typer.Option(
        False, "--json", help="Machine-readable JSON output for verbs that list or show."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    ctx.obj = Output(json=json_output)
    load_settings()  # a bad setting stops every verb at start-up, with one line


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def usage_message(exc: Exception) -> str:
    """One line: click's message (with its "Did you mean" suggestion) and where help is."""
    message = exc.format_message()  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message = message if message.endswith((".", "?")) else message + "."
        message = f"{message} See '{ctx.command_path} --help'."
    return " ".join(message.split())


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI, turning hearth errors into exit codes."""
    try:
        # first, before any verb imports torch: libgomp reads its wait policy once, when it
        # is loaded (hearth.engine.threads says why idle OpenMP workers must sleep)
        set_omp_wait_policy()
        # in non-standalone mode click returns a verb's `typer.Exit(code)` instead of exiting
        code = app(args=argv, prog_name="hearth", standalone_mode=False)
    except HearthError as exc:
        Output.error(str(exc))
        sys.exit(exc.exit_code)
    except typer.Abort:
        Output.error("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except _CLICK_ERROR as exc:  # usage errors arrive here in non-standalone mode
        Output.error(usage_message(exc))
        sys.exit(getattr(exc, "exit_code", 2))
    if isinstance(code, int) and code:
        sys.exit(code)
