"""Metrics against hand-computed cases (and, where lm-eval is installed, against its own
functions on the same inputs)."""

from __future__ import annotations

import math

import pytest

from hearth.eval import metrics


def test_choose_picks_highest_and_first_on_ties() -> None:
    assert metrics.choose([-3.0, -1.0, -2.0]) == 1
    assert metrics.choose([-1.0, -1.0]) == 0


def test_choose_norm_divides_by_characters_of_the_choice() -> None:
    # raw: -10 > -12 picks 0; per character: -10/1 = -10 < -12/8 = -1.5 picks 1
    assert metrics.choose([-10.0, -12.0]) == 0
    assert metrics.choose_norm([-10.0, -12.0], ["a", "bbbbbbbb"]) == 1
    # characters, not bytes: "é" is 1 character (2 bytes); -2/1 = -2 beats -3/1 = -3
    assert metrics.choose_norm([-3.0, -2.0], ["x", "é"]) == 1
    with pytest.raises(ValueError):
        metrics.choose_norm([-1.0], ["a", "b"])


def test_mc2_is_normalised_mass_on_true_answers() -> None:
    lls = [math.log(0.2), math.log(0.3), math.log(0.5)]
    assert metrics.mc2(lls, [1, 0, 0]) == pytest.approx(0.2)
    assert metrics.mc2(lls, [1, 1, 0]) == pytest.approx(0.5)
    assert metrics.mc2(lls, [1, 0, 1]) == pytest.approx(0.7)  # by label, not position
    # probabilities need not sum to 1: 0.1, 0.1 -> 0.5 each
    assert metrics.mc2([math.log(0.1), math.log(0.1)], [1, 0]) == pytest.approx(0.5)
    # very negative log-likelihoods (long answers) must not underflow to 0/0
    assert metrics.mc2([-2000.0, -2001.0], [1, 0]) == pytest.approx(1 / (1 + math.exp(-1)))


def test_gsm8k_strict_and_flexible_extraction() -> None:
    text = " Janet sells 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = $18.\n#### 1,018"
    assert metrics.strict_extract(text) == "1,018"
    assert metrics.flexible_extract("She makes 9 * 2 = 18.") == "18."
    assert metrics.flexible_extract("costs $1,234 total") == "$1,234"
    assert metrics.strict_extract("the answer is 18") == metrics.INVALID
    assert metrics.flexible_extract("no digits here") == metrics.INVALID


def test_gsm8k_exact_match_normalises_both_sides() -> None:
    reference = "She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 1018"
    assert metrics.gsm8k_exact_match("1,018", reference) == 1.0
    assert metrics.gsm8k_exact_match("$1018.", reference) == 1.0
    assert metrics.gsm8k_exact_match("1018.5", reference) == 0.0
    assert metrics.gsm8k_exact_match(metrics.INVALID, reference) == 0.0


def test_exact_match_regexes_and_case() -> None:
    assert metrics.exact_match("ABC", "abc") == 0.0
    assert metrics.exact_match("ABC", "abc", ignore_case=True) == 1.0
    assert metrics.exact_match("a-b", "ab", regexes_to_ignore=["-"]) == 1.0


def test_mean_and_sample_stderr_by_hand() -> None:
    values = [1.0, 0.0, 1.0, 1.0]
    # mean 0.75; squared deviations 3 * 0.0625 + 0.5625 = 0.75; / (n-1) = 0.25;
    # stddev 0.5; / sqrt(4) = 0.25
    assert metrics.mean(values) == 0.75
    assert metrics.sample_stddev(values) == pytest.approx(0.5)
    assert metrics.mean_stderr(values) == pytest.approx(0.25)
    assert metrics.mean_stderr([1.0]) is None
    with pytest.raises(ValueError):
        metrics.mean([])


def test_group_stderr_formulas_by_hand() -> None:
    # pooled: sum((n-1) * se^2 * n) / (N - k) = (1*.25*2 * 2) / 2 = 0.5; / N=4 -> sqrt(.125)
    assert metrics.pooled_stderr([0.5, 0.5], [2, 2]) == pytest.approx(math.sqrt(0.125))
    # unweighted: sqrt(0.3^2 + 0.4^2) / 2 = 0.25
    assert metrics.unweighted_mean_stderr([0.3, 0.4]) == pytest.approx(0.25)


def test_agrees_with_lm_eval_functions() -> None:
    lm_metrics = pytest.importorskip("lm_eval.api.metrics")
    values = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5]
    assert metrics.mean_stderr(values) == pytest.approx(lm_metrics.mean_stderr(values))
    assert metrics.pooled_stderr([0.1, 0.2, 0.05], [10, 20, 40]) == pytest.approx(
        lm_metrics.pooled_sample_stderr([0.1, 0.2, 0.05], [10, 20, 40])
    )
    assert metrics.unweighted_mean_stderr([0.1, 0.2]) == pytest.approx(
        lm_metrics.unweighted_mean_stderr([0.1, 0.2])
    )
    refs = ["x\n#### 1,018", "y\n#### 7", "z\n#### -3"]
    preds = ["$1018.", "8", "-3"]
    expected = lm_metrics.exact_match_hf_evaluate(
        preds, refs, regexes_to_ignore=list(metrics.GSM8K_IGNORE), ignore_case=True
    )["exact_match"]
    mine = sum(metrics.gsm8k_exact_match(p, r) for p, r in zip(preds, refs, strict=True)) / 3
    assert mine == pytest.approx(expected)
    filters = pytest.importorskip("lm_eval.filters.extraction")
    for text in ["So 9 * 2 = 18.\n#### 18", "about $1,234.50 or 7", "none"]:
        strict = filters.RegexFilter(metrics.STRICT_PATTERN).apply([[text]], [{}])
        flex = filters.RegexFilter(metrics.FLEXIBLE_PATTERN, group_select=-1).apply([[text]], [{}])
        assert metrics.strict_extract(text) == next(iter(strict))[0]
        assert metrics.flexible_extract(text) == next(iter(flex))[0]
