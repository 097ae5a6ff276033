"""Fixtures of the kernel tests. `isa_level`: the test runs once per instruction-set level
this CPU runs (isa.py; an AVX-512 machine runs the avx2 and generic builds too, so one
machine checks every road against the same reference), with every kernel library switched
to that level's build for the test and back to the CPU's best after it. A test module opts
in with `pytestmark = pytest.mark.usefixtures("isa_level")`; a kernel with no road at a
level (dense, prefill: AVX-512 only) is simply not offered there."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from isa_levels import use_level

from hearth.model.cpu import isa


@pytest.fixture(params=isa.levels_here())
def isa_level(request: pytest.FixtureRequest) -> Iterator[str]:
    use_level(request.param)
    yield request.param
    use_level(None)
