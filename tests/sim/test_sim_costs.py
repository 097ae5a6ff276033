"""StepCosts: interpolation of decode steps, prefill cost, the measured files load."""

from __future__ import annotations

import pytest

from hearth.sim.costs import COSTS_DIR, StepCosts

COSTS = StepCosts(0.01, 0.001, (1, 4, 16), (0.02, 0.03, 0.06))


def test_decode_step_is_interpolated_and_extrapolated() -> None:
    assert COSTS.decode_s(1) == pytest.approx(0.02)
    assert COSTS.decode_s(2) == pytest.approx(0.02 + 0.01 / 3)
    assert COSTS.decode_s(32) == pytest.approx(0.06 + 0.03 / 12 * 16)
    assert COSTS.decode_s(0) == 0.0


def test_a_step_adds_prefill_tokens_to_the_decodes() -> None:
    assert COSTS.step_s(100, 0) == pytest.approx(0.01 + 0.1)
    assert COSTS.step_s(100, 4) == pytest.approx(0.03 + 0.1)  # one step's fixed cost, not two
    assert COSTS.step_s(0, 0) == 0.0


def test_bad_costs_are_refused() -> None:
    with pytest.raises(ValueError, match="decode_batches must be increasing"):
        StepCosts(0.0, 0.001, (4, 1), (0.1, 0.2))
    with pytest.raises(ValueError, match="prefill_per_token_s must be > 0"):
        StepCosts(0.0, 0.0, (1, 2), (0.1, 0.2))


def test_every_measured_file_loads_for_its_threads() -> None:
    files = sorted(COSTS_DIR.glob("*.json"))
    assert files
    for path in files:
        for threads in (1, 2):
            costs = StepCosts.load(path.stem, threads)
            assert costs.decode_s(8) > 0 and costs.prefill_per_token_s > 0
    with pytest.raises(ValueError, match="no costs measured for 64 threads"):
        StepCosts.load(files[0].stem, 64)
