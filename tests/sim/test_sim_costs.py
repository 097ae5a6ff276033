"""StepCosts: a step's time from its shape, the fit to timed steps, the measured files."""

from __future__ import annotations

import random

import pytest

from hearth.sim.costs import COSTS_DIR, StepCosts, StepShape

COSTS = StepCosts(0.01, 0.001, 0.002, 0.0005, 0.0001)


def test_a_step_costs_its_fixed_part_and_each_term() -> None:
    shape = StepShape(prefill_tokens=100, decode_rows=4, prefill_pairs=5050, decode_keys=400)
    expected = 0.01 + 100 * 0.001 + 4 * 0.002 + 5.05 * 0.0005 + 0.4 * 0.0001
    assert COSTS.step_s(shape) == pytest.approx(expected)
    assert COSTS.step_s(StepShape()) == 0.0


def test_the_fit_recovers_the_costs_that_made_the_steps() -> None:
    rng = random.Random(0)
    shapes = [
        StepShape(p, d, p * (p + 1) // 2 + p * c, d * c)
        for p, d, c in (
            (rng.choice([0, 16, 64, 300]), rng.randrange(0, 30), rng.randrange(1, 400))
            for _ in range(60)
        )
        if p or d
    ]
    fitted = StepCosts.fit([(s, COSTS.step_s(s) * rng.uniform(0.98, 1.02)) for s in shapes])
    assert fitted.prefill_token_s == pytest.approx(0.001, rel=0.1)
    assert fitted.decode_row_s == pytest.approx(0.002, rel=0.1)
    assert fitted.fixed_s == pytest.approx(0.01, rel=0.2)


def test_a_term_the_steps_do_not_need_fits_zero_not_negative() -> None:
    shapes = [StepShape(p, 0, 0, 0) for p in (8, 16, 64, 128, 256, 512)]
    fitted = StepCosts.fit([(s, 0.002 * s.prefill_tokens) for s in shapes])
    assert fitted.fixed_s >= 0 and fitted.decode_row_s == 0.0
    assert fitted.prefill_token_s == pytest.approx(0.002, rel=0.01)


def test_bad_costs_are_refused() -> None:
    with pytest.raises(ValueError, match="decode_row_s must be >= 0"):
        StepCosts(0.0, 0.001, -0.1)
    with pytest.raises(ValueError, match="a prompt costs time"):
        StepCosts(0.0, 0.0, 0.1)
    with pytest.raises(ValueError, match="at least 5 timed steps"):
        StepCosts.fit([(StepShape(1), 0.1)])


def test_every_measured_file_loads_for_its_threads() -> None:
    files = sorted(COSTS_DIR.glob("*.json"))
    assert files
    for path in files:
        for threads in (1, 2):
            costs = StepCosts.load(path.stem, threads)
            assert costs.step_s(StepShape(0, 8, 0, 800)) > 0
            assert costs.step_s(StepShape(64, 0, 64 * 65 // 2, 0)) > 0
    assert StepCosts.load(str(files[0]), 1) == StepCosts.load(files[0].stem, 1)
    with pytest.raises(ValueError, match="no costs measured for 64 threads"):
        StepCosts.load(files[0].stem, 64)
