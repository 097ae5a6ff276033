"""The policy: drafts only while the measured step costs say they raise the step's tokens
per second; a sequence whose drafts keep failing stops drafting (probing now and then)."""

from __future__ import annotations

from hearth.engine.sampling_params import SamplingParams
from hearth.engine.sequence import Sequence
from hearth.engine.spec.speculator import PROBE_EVERY, Speculator, StepCosts

REPEATING = [7, 8, 9, 10, 11, 12, 13, 14, 7, 8]  # lookup proposes 9, 10, 11, ...


def _decoding(n: int = 1, speculate: bool = True) -> list[Sequence]:
    seqs = []
    for _ in range(n):
        seq = Sequence("r", REPEATING, SamplingParams(speculate=speculate), block_size=16)
        seq.num_computed_tokens = len(REPEATING) - 1  # the last token is new: decoding
        seqs.append(seq)
    return seqs


def test_step_costs_fall_back_to_the_nearest_measured_count_below() -> None:
    costs = StepCosts(decay=0.5)
    assert costs.estimate(4) is None
    costs.record(1, 0.010)
    costs.record(1, 0.020)
    assert costs.estimate(1) == 0.015
    assert costs.estimate(6) == 0.015


def test_drafts_when_a_step_costs_the_same_for_more_tokens() -> None:
    spec = Speculator("auto", 5)
    for n in range(1, 8):
        spec.observe_step(n, 0.020)  # memory-bound: flat
    (seq,) = _decoding()
    spec.propose([seq], lambda s: 100, 512)
    assert seq.draft_token_ids == [9, 10, 11, 12, 13]


def test_no_drafts_when_every_token_costs_compute() -> None:
    spec = Speculator("auto", 5)
    for n in range(1, 200):
        spec.observe_step(n, 0.002 * n)  # compute-bound: linear
    seqs = _decoding(16)
    spec.propose(seqs, lambda s: 100, 512)
    assert all(not s.draft_token_ids for s in seqs)
    # "ngram" drafts anyway; a request that opts out never does
    forced = Speculator("ngram", 3)
    seqs = _decoding(2) + _decoding(1, speculate=False)
    forced.propose(seqs, lambda s: 100, 512)
    assert [s.draft_token_ids for s in seqs] == [[9, 10, 11], [9, 10, 11], []]


def test_limit_and_unmeasured_costs_explore() -> None:
    spec = Speculator("auto", 5)
    (seq,) = _decoding()
    spec.propose([seq], lambda s: 2, 512)  # near max_tokens: two drafts at most
    assert seq.draft_token_ids == [9, 10]


def test_a_sequence_whose_drafts_fail_stops_and_probes() -> None:
    spec = Speculator("auto", 4)
    for n in range(1, 8):
        spec.observe_step(n, 0.020)
    (seq,) = _decoding()
    for _ in range(10):
        spec.propose([seq], lambda s: 100, 512)
        spec.observe_verified(seq, len(seq.draft_token_ids), 0)
    drafted = []
    for _ in range(3 * PROBE_EVERY):
        spec.propose([seq], lambda s: 100, 512)
        drafted.append(len(seq.draft_token_ids))
    # a one-token probe after PROBE_EVERY steps, the next after twice as many
    assert sum(drafted) == 2 and max(drafted) == 1
    first, second = (i for i, n in enumerate(drafted) if n)
    assert second - first == 2 * PROBE_EVERY


def test_finished_outputs_feed_the_shared_cache() -> None:
    spec = Speculator("ngram", 3)
    (done,) = _decoding()
    done.token_ids += [40, 41, 42, 43, 44, 45]
    done.num_computed_tokens = len(done.token_ids) - 1
    done.finish_reason = "stop"
    spec.propose([done], lambda s: 100, 512)  # tracked while running
    spec.propose([], lambda s: 100, 512)  # gone: its output joins the shared cache
    fresh = Sequence("r2", [90, 40, 41, 42], SamplingParams(), block_size=16)
    fresh.num_computed_tokens = 3
    spec.propose([fresh], lambda s: 100, 512)
    assert fresh.draft_token_ids == [43, 44, 45]
