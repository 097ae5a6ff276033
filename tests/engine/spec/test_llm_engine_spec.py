"""Speculative decoding end to end over the tiny random llama: greedy output is the
non-speculative output token for token (alone, in mixed batches with prefills and
non-speculating requests, under preemption), a seeded sampled request draws the same
tokens, and every KV block comes back (the conftest checks after each test).

A random 2-layer model does not quote its prompt, so n-gram lookup rarely proposes; the
drafter here is an oracle that knows the non-speculative output and proposes it with
every third draft wrong: acceptance, rejection and rollback all happen, on purpose."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from known_drafter import KnownContinuation

from hearth.engine.engine_config import GIB
from hearth.engine.llm_engine import LLMEngine
from hearth.engine.outputs import RequestOutput
from hearth.engine.sampling_params import SamplingParams
from hearth.engine.spec.speculator import Speculator
from hearth.model.kv_cache import kv_cache_bytes_per_block

GREEDY = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True)


def _with_oracle(
    engine: LLMEngine, prompts: list[list[int]], outputs: list[list[int]], mode: str = "ngram"
) -> LLMEngine:
    expected = {tuple(p): p + o for p, o in zip(prompts, outputs, strict=True)}
    engine.speculator = Speculator(
        mode, 5, lambda seq: KnownContinuation(expected[tuple(seq.prompt_token_ids)])
    )
    return engine


def _prompts(n: int, seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, 40000, (20 + 7 * i,), generator=g).tolist() for i in range(n)]


def _run(
    engine: LLMEngine, prompts: list[Any], params: SamplingParams | list[SamplingParams]
) -> list[RequestOutput]:
    plist = params if isinstance(params, list) else [params] * len(prompts)
    ids = [f"r{i}" for i in range(len(prompts))]
    for rid, p, sp in zip(ids, prompts, plist, strict=True):
        engine.add_request(rid, p, sp)
    final: dict[str, RequestOutput] = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                final[out.request_id] = out
    return [final[rid] for rid in ids]


def _tokens(outs: list[RequestOutput]) -> list[list[int]]:
    return [o.outputs[0].token_ids for o in outs]


def test_greedy_equals_no_speculation_alone_and_batched(
    make_engine: Callable[..., LLMEngine],
) -> None:
    prompts = _prompts(4)
    plain = _tokens(_run(make_engine(), prompts, GREEDY))
    for mode in ("ngram", "auto"):
        for p, want in zip(prompts, plain, strict=True):
            engine = _with_oracle(make_engine(speculative=mode), prompts, plain, mode)
            assert _tokens(_run(engine, [p], GREEDY))[0] == want, mode
    spec = _with_oracle(make_engine(speculative="ngram"), prompts, plain)
    # mixed: one request never speculates; prompts of several lengths prefill meanwhile
    off = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True, speculate=False)
    outs = _run(spec, prompts, [GREEDY, GREEDY, off, GREEDY])
    assert _tokens(outs) == plain
    m = spec.metrics()
    assert 0 < m.spec_accepted_tokens_total < m.spec_draft_tokens_total  # some rejected
    assert m.generation_tokens_total == 4 * 40
    # each request's own counts; the one that opted out drafted nothing
    counts = [(o.outputs[0].draft_n, o.outputs[0].draft_n_accepted) for o in outs]
    assert counts[2] == (0, 0)
    assert all(n > a > 0 for i, (n, a) in enumerate(counts) if i != 2)


def test_greedy_identity_under_chunking_and_preemption(
    make_engine: Callable[..., LLMEngine], tiny_llama: tuple[Any, Any]
) -> None:
    prompts = _prompts(6, seed=3)
    plain = _tokens(_run(make_engine(max_num_batched_tokens=32), prompts, GREEDY))
    # a pool too small for all six at once: sequences are preempted mid-speculation
    spec = make_engine(
        speculative="ngram",
        max_num_batched_tokens=32,
        block_size=4,
        kv_cache_gb=40 * kv_cache_bytes_per_block(tiny_llama[0], 4, torch.float32) / GIB,
    )
    _with_oracle(spec, prompts, plain)
    assert _tokens(_run(spec, prompts, GREEDY)) == plain
    assert spec.scheduler.num_preemptions > 0
    assert spec.metrics().spec_accepted_tokens_total > 0


def test_seeded_sampling_draws_the_same_tokens(make_engine: Callable[..., LLMEngine]) -> None:
    prompts = _prompts(3, seed=5)
    params = [
        SamplingParams(
            temperature=0.8,
            top_k=50,
            seed=11 + i,
            max_tokens=30,
            ignore_eos=True,
            repetition_penalty=1.1,
        )
        for i in range(3)
    ]
    plain = _tokens(_run(make_engine(), prompts, params))
    spec = _with_oracle(make_engine(speculative="ngram"), prompts, plain)
    assert _tokens(_run(spec, prompts, params)) == plain
    assert spec.metrics().spec_accepted_tokens_total > 0


def test_stops_inside_the_drafts_and_aborts_free_everything(
    make_engine: Callable[..., LLMEngine],
) -> None:
    prompts = _prompts(2, seed=7)
    plain = _tokens(_run(make_engine(), prompts, GREEDY))
    # max_tokens and a stop token that fall in the middle of an accepted run of drafts
    stop_at = plain[1][9]
    params = [
        SamplingParams(temperature=0, max_tokens=7, ignore_eos=True),
        SamplingParams(temperature=0, max_tokens=40, stop_token_ids=(stop_at,)),
    ]
    spec = _with_oracle(make_engine(speculative="ngram"), prompts, plain)
    outs = _tokens(_run(spec, prompts, params))
    assert outs[0] == plain[0][:7]
    assert outs[1] == plain[1][: plain[1].index(stop_at) + 1]
    engine = _with_oracle(make_engine(speculative="ngram"), prompts, plain)
    engine.add_request("a", prompts[0], GREEDY)
    engine.add_request("b", prompts[1], GREEDY)
    for _ in range(4):
        engine.step()
    assert engine.requests["a"].seqs[0].num_accepted_draft_tokens > 0
    engine.abort("a")
    engine.abort("b")
    assert not engine.scheduler.running


def test_speculator_refuses_bad_settings() -> None:
    import pytest

    from hearth.engine.engine_config import EngineConfig

    with pytest.raises(ValueError, match="speculative must be one of"):
        EngineConfig(speculative="eagle")
    with pytest.raises(ValueError, match="num_speculative_tokens"):
        EngineConfig(speculative="ngram", num_speculative_tokens=0)
    with pytest.raises(ValueError, match="num_speculative_tokens"):
        Speculator("ngram", 1000)


class Liar:
    """Proposes tokens the model never takes (the known continuation, each one off by one):
    speculation on text that does not repeat."""

    def __init__(self, expected: list[int]) -> None:
        self.expected = expected

    def propose(self, tokens: list[int], k: int) -> list[int]:
        return [(t + 1) % 40000 for t in self.expected[len(tokens) : len(tokens) + k]]


def test_auto_stops_drafting_where_drafts_fail(make_engine: Callable[..., LLMEngine]) -> None:
    prompts = _prompts(1, seed=9)
    plain = _tokens(_run(make_engine(), prompts, GREEDY))
    drafted = {}
    expected = prompts[0] + plain[0]
    for mode in ("ngram", "auto"):
        engine = make_engine(speculative=mode)
        engine.speculator = Speculator(mode, 5, lambda seq: Liar(expected))
        assert _tokens(_run(engine, prompts, GREEDY)) == plain
        m = engine.metrics()
        assert m.spec_accepted_tokens_total == 0
        drafted[mode] = m.spec_draft_tokens_total
    assert drafted["ngram"] > 150  # every step drafts 5 and loses them
    assert drafted["auto"] < 40  # a few failed steps, then a one-token probe now and then
