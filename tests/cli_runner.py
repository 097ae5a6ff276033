"""`hearth ARGS...` run in this process the way the tests call it: through the real entry
point (`hearth.cli.main`), with its exit code, stdout and stderr. The `cli` fixture in
conftest.py hands one out, bound to the test's empty HEARTH_HOME."""

from __future__ import annotations

from collections.abc import Callable

import pytest

# cli("list", "--json") -> (exit code, stdout, stderr with its whitespace folded)
Cli = Callable[..., tuple[int, str, str]]


def run_hearth_raw(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `hearth *args`: (exit code, stdout, stderr as printed)."""
    from hearth.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def run_hearth(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `hearth *args`; stderr's line breaks and runs of spaces become one space (rich
    wraps an error line at the terminal's width), so tests compare words."""
    code, out, err = run_hearth_raw(capsys, *args)
    return code, out, " ".join(err.split())
