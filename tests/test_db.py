"""hearth.db: the shared engine and table creation, which several processes may race on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect

from hearth.db import get_engine

RACE = """
import sys
from sqlalchemy import Column, Integer, MetaData, Table
from hearth.db import Base, ensure_tables, get_engine

table = Table("race_probe", Base.metadata, Column("id", Integer, primary_key=True))
engine = get_engine(sys.argv[1])
for _ in range(20):
    ensure_tables(engine, table)
"""


def test_ensure_tables_is_safe_across_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    procs = [
        subprocess.Popen([sys.executable, "-c", RACE, url], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    assert "race_probe" in inspect(get_engine(url)).get_table_names()
