"""Fixtures of the model tests (helpers: tiny_models.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tiny_models import backend_under_test, make_pair

from hearth.model.layers.decoder import Decoder
from hearth.model.layers.ops import Ops


@pytest.fixture
def tiny_pair(tmp_path: Path) -> Callable[..., tuple[Any, Decoder]]:
    return lambda config, seed=0: make_pair(tmp_path, config, seed)


@pytest.fixture(scope="session")
def backend() -> Ops:
    """The backend under test (HEARTH_TEST_KERNELS: auto or torch)."""
    return backend_under_test()
