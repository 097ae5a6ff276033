"""Prompt lookup: the longest earlier match of the suffix proposes what followed it."""

from __future__ import annotations

import pytest

from hearth.engine.spec.ngram import NgramIndex


def test_proposes_what_followed_the_latest_match_longest_first() -> None:
    index = NgramIndex(min_n=1, max_n=3)
    tokens = [1, 2, 3, 4, 5, 9, 3, 7, 8, 1, 2, 3]
    # suffix (1, 2, 3) occurred at the start: 4, 5, 9 followed
    assert index.propose(tokens, 3) == [4, 5, 9]
    tokens += [4]
    # (2, 3, 4) again; the continuation may run into the tokens just appended
    assert index.propose(tokens, 20) == [5, 9, 3, 7, 8, 1, 2, 3, 4]
    tokens += [7]  # (4, 7): unseen; (7,) followed by 8
    assert index.propose(tokens, 2) == [8, 1]


def test_no_match_no_proposal_and_the_suffix_never_matches_itself() -> None:
    index = NgramIndex()  # min_n 2
    assert index.propose([5, 6, 7, 8], 4) == []
    assert index.propose([5, 6, 7, 8, 5], 4) == []  # a one-token match is below min_n
    assert index.propose([5, 6, 7, 8, 5, 6], 4) == [7, 8, 5, 6]
    assert index.propose([1], 4) == []
    assert index.propose([5, 6, 7, 8, 5, 6], 0) == []


def test_bad_sizes() -> None:
    with pytest.raises(ValueError, match="min_n"):
        NgramIndex(min_n=0)
    with pytest.raises(ValueError, match="min_n"):
        NgramIndex(min_n=3, max_n=2)


def test_shared_ngrams_propose_from_finished_outputs_never_across_them() -> None:
    from hearth.engine.spec.ngram import SharedNgrams

    shared = SharedNgrams(min_n=2, max_n=3)
    assert shared.propose([1, 2, 3], 4) == []
    shared.add([10, 11, 12, 13, 14])
    shared.add([20, 21, 22])
    assert shared.propose([5, 11, 12], 2) == [13, 14]
    assert shared.propose([5, 11, 12], 9) == [13, 14]  # stops at the output's end
    assert shared.propose([9, 21], 5) == []  # a one-token match is below min_n
    assert shared.propose([20, 21], 5) == [22]
    small = SharedNgrams(min_n=2, max_tokens=8)
    small.add([1, 2, 3, 4])
    small.add([5, 6, 7, 8])  # past max_tokens: the first output is forgotten
    assert small.propose([1, 2], 3) == [] and small.propose([5, 6], 3) == [7, 8]
