"""pytest (default import mode) imports test modules by basename: two `test_x.py` in
different folders break collection of the whole suite. Fail here with the names instead."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def test_test_module_basenames_are_unique() -> None:
    tests = Path(__file__).resolve().parent
    counts = Counter(p.name for p in tests.rglob("test_*.py"))
    duplicated = sorted(name for name, n in counts.items() if n > 1)
    assert not duplicated, f"rename one of each: {duplicated}"
