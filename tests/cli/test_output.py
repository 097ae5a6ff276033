"""Piped output (not a terminal) is never cut to a terminal's width."""

from __future__ import annotations

import sys

import pytest
from rich.table import Table

from hearth.cli.output import Output


def test_piped_table_is_not_truncated(capsys: pytest.CaptureFixture[str]) -> None:
    assert not sys.stdout.isatty()  # pytest captures stdout: a pipe, as `hearth list | cat`
    name = "a-really-long-model-name-that-goes-on-and-on:with-a-long-tag-too"
    table = Table("NAME", "ID", "SIZE", "PARAMS", "QUANT", "LICENSE", "COMM", "CREATED")
    table.add_row(name, "5b67ecf8aed7", "98.4 MB", "135M", "Q4_1", "apache-2.0", "yes", "2026-12-07")
    Output().console.print(table)
    Output().console.print(f"copied 'smollm2' to '{name}' " + "and a long tail " * 8)
    lines = capsys.readouterr().out.splitlines()
    assert "…" not in "".join(lines)
    assert any(name in line and "2026-12-07" in line for line in lines)
    assert any(line.startswith("copied") and line.rstrip().endswith("tail") for line in lines)
