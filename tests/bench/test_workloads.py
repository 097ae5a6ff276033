"""Bench workloads are seeded and sized as the issue says; the statistics are right."""

from __future__ import annotations

import pytest

from hearth.bench.workloads import (
    RequestTiming,
    Workload,
    make_workloads,
    percentile,
    summarize,
)


def test_full_sizes_follow_the_issue() -> None:
    loads = make_workloads(("decode", "concurrent", "prefix"), vocab_size=49152)
    assert make_workloads(("concurrent",), 49152) == make_workloads(("concurrent",), 49152)
    decode = loads[0]
    assert (len(decode.prompts[0]), decode.max_tokens) == (128, [128])
    concurrent = [w for w in loads if w.scenario == "concurrent"]
    assert [w.concurrency for w in concurrent] == [1, 4, 16, 64]
    for w in concurrent:
        assert all(64 <= len(p) <= 512 for p in w.prompts)
        assert all(64 <= n <= 256 for n in w.max_tokens)
    prefix = [w for w in loads if w.scenario == "prefix"]
    assert [w.prefix_caching for w in prefix] == [True, False]
    assert all(len(w.prompts) == 32 and w.prompts[0][:1000] == w.prompts[31][:1000] for w in prefix)
    assert all(200 <= t < 49152 - 200 for w in loads for p in w.prompts for t in p)


def test_concurrency_levels_run_alone_with_the_same_requests() -> None:
    full = make_workloads(("decode", "concurrent", "prefix"), 49152)
    level16 = next(w for w in full if w.scenario == "concurrent" and w.concurrency == 16)
    alone = make_workloads(("concurrent",), 49152, concurrency=(16,))
    assert alone == [level16]
    prefix_alone = make_workloads(("prefix",), 49152)
    assert prefix_alone == [w for w in full if w.scenario == "prefix"]
    quick = make_workloads(("concurrent",), 49152, quick=True, concurrency=(2,))
    assert [(w.concurrency, len(w.prompts)) for w in quick] == [(2, 2)]
    assert all(8 <= len(p) <= 32 for p in quick[0].prompts)
    with pytest.raises(ValueError, match="concurrency"):
        make_workloads(("concurrent",), 49152, concurrency=(0,))


def test_summary_statistics() -> None:
    w = Workload("concurrent", 2, [[1, 2], [3]], [3, 2])
    timings = [RequestTiming(0.0, [0.1, 0.2, 0.4]), RequestTiming(0.0, [0.3, 0.5])]
    run = summarize("hearth", w, timings, duration_s=0.5)
    assert run["output_tokens"] == 5 and run["output_tokens_per_s"] == 10.0
    assert run["ttft_ms_p50"] == 100.0 and run["ttft_ms_p99"] == 300.0
    assert run["itl_ms_p50"] == 200.0  # gaps 100, 200, 200
    assert percentile([], 50) is None and percentile([5.0], 99) == 5.0
