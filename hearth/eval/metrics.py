"""Per-item metrics and their aggregation, with lm-evaluation-harness's formulas:
accuracy by raw / character-length-normalised log-likelihood, TruthfulQA mc2, GSM8K exact
match after the strict / flexible regex filters, mean with the sample standard error, and
the group formulas (size-weighted pooled, unweighted mean) and the bootstrap.

Pure Python on floats; knows nothing of models, tasks' prompts or storage."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

# -- multiple choice ------------------------------------------------------------------


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value; the first one on ties (as numpy.argmax)."""
    if not values:
        raise ValueError("argmax of an empty sequence")
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def choose(lls: Sequence[float]) -> int:
    """The choice `acc` picks: highest summed log-likelihood."""
    return argmax(lls)


def choose_norm(lls: Sequence[float], choices: Sequence[str]) -> int:
    """The choice `acc_norm` picks: highest log-likelihood per character of the choice
    text (lm-eval divides by `len(choice)` of the choice without the target delimiter)."""
    if len(lls) != len(choices):
        raise ValueError(f"{len(lls)} log-likelihoods for {len(choices)} choices")
    return argmax([ll / float(len(c)) for ll, c in zip(lls, choices, strict=True)])


def mc2(lls: Sequence[float], labels: Sequence[int]) -> float:
    """TruthfulQA mc2: the probability mass on the true answers after normalising the
    answers' probabilities to sum to 1. `labels[i]` is 1 for a true answer (current
    lm-eval masks by label; the 2023 harness split at the first 0, which differs only for
    the two upstream rows whose true answers are not contiguous)."""
    if len(lls) != len(labels) or not lls:
        raise ValueError(f"{len(lls)} log-likelihoods for {len(labels)} labels")
    top = max(lls)  # shift before exp: same ratio, no underflow for long answers
    probs = [math.exp(ll - top) for ll in lls]
    total = sum(probs)
    return sum(p for p, lab in zip(probs, labels, strict=True) if lab == 1) / total


# -- GSM8K exact match ----------------------------------------------------------------

STRICT_PATTERN = r"#### (\-?[0-9\.\,]+)"
FLEXIBLE_PATTERN = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
INVALID = "[invalid]"
# applied in this order to prediction and reference before comparing (gsm8k.yaml)
GSM8K_IGNORE = (",", r"\$", r"(?s).*#### ", r"\.$")


def regex_extract(text: str, pattern: str, group_select: int = 0) -> str:
    """lm-eval's `regex` filter: the `group_select`-th match (for alternations, its first
    non-empty group), stripped; "[invalid]" when nothing matches."""
    matches = re.findall(pattern, text)
    if not matches:
        return INVALID
    match = matches[group_select]
    if isinstance(match, tuple):
        found = [m for m in match if m]
        if not found:
            return INVALID
        match = found[0]
    return match.strip()


def strict_extract(text: str) -> str:
    """The number after "#### " (the answer format the few-shot examples teach)."""
    return regex_extract(text, STRICT_PATTERN)


def flexible_extract(text: str) -> str:
    """The last number-looking token anywhere in the text."""
    return regex_extract(text, FLEXIBLE_PATTERN, group_select=-1)


def exact_match(
    prediction: str,
    reference: str,
    regexes_to_ignore: Sequence[str] = (),
    ignore_case: bool = False,
) -> float:
    """HF-evaluate exact match as lm-eval configures it: delete each regex from both
    strings (in order), optionally lower-case, compare."""
    for pattern in regexes_to_ignore:
        prediction = re.sub(pattern, "", prediction)
        reference = re.sub(pattern, "", reference)
    if ignore_case:
        prediction, reference = prediction.lower(), reference.lower()
    return 1.0 if prediction == reference else 0.0


def gsm8k_exact_match(extracted: str, reference: str) -> float:
    return exact_match(extracted, reference, GSM8K_IGNORE, ignore_case=True)


# -- aggregation ----------------------------------------------------------------------


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of no values")
    return sum(values) / len(values)


def sample_stddev(values: Sequence[float]) -> float:
    """Standard deviation with Bessel's correction (n - 1)."""
    if len(values) < 2:
        raise ValueError("sample standard deviation needs at least 2 values")
    mu = mean(values)
    return math.sqrt(sum((x - mu) ** 2 for x in values) / (len(values) - 1))


def mean_stderr(values: Sequence[float]) -> float | None:
    """Standard error of the mean: sample stddev / sqrt(n). None for fewer than 2 items
    (lm-eval reports N/A there)."""
    if len(values) < 2:
        return None
    return sample_stddev(values) / math.sqrt(len(values))


def pooled_stderr(stderrs: Sequence[float], sizes: Sequence[int]) -> float:
    """Standard error of a size-weighted mean of groups (lm-eval `pooled_sample_stderr`)."""
    if len(stderrs) != len(sizes) or not sizes:
        raise ValueError("one stderr per group size, at least one group")
    var = sum((n - 1) * se**2 * n for n, se in zip(sizes, stderrs, strict=True)) / (
        sum(sizes) - len(sizes)
    )
    return math.sqrt(var / sum(sizes))


def unweighted_mean_stderr(stderrs: Sequence[float]) -> float:
    """Standard error of the plain mean of k independent group means:
    sqrt(sum(se_i^2)) / k (lm-eval `unweighted_mean_stderr`)."""
    if not stderrs:
        raise ValueError("no stderrs")
    return math.sqrt(sum(se**2 for se in stderrs)) / len(stderrs)
