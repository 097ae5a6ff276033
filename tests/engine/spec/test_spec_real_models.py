"""Speculative decoding on real SmolLM2 Q4_1 weights (the int4 decode road), and Gemma 3: prompt lookup
on a quoting prompt and on open chat gives the non-speculative greedy output token for
token, alone and in a mixed batch; sampled, the first token drawn from a verification row
is distributed as without speculation (chi-square, fixed seed); under a grammar only
allowed tokens come out; every KV block is back in the pool after each test.

The baseline runs in the same engine with `speculate=False` per request, so both sides
share weights, threads and the decode road."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from hearth.engine.grammar_spec import StructuredSpec
from hearth.engine.llm import LLM
from hearth.engine.outputs import RequestOutput
from hearth.engine.sampling_params import SamplingParams

TEXT = (
    "The old lighthouse stood at the edge of the cliff for more than two hundred years. "
    "Every night its keeper climbed the narrow stairs, one hundred and twelve steps, to "
    "light the lamp that warned ships away from the rocks below. In winter the wind pushed "
    "against the glass so hard that the whole tower seemed to hum."
)
QUOTE = [{"role": "user", "content": "Repeat this text word for word:\n\n" + TEXT}]
CHATS = [
    [{"role": "user", "content": "Explain the difference between a list and a tuple."}],
    [{"role": "user", "content": "Write a short poem about autumn leaves."}],
]


@pytest.fixture(scope="module")
def spec_llm(smollm2_gguf: Path) -> LLM:
    threads = torch.get_num_threads()
    llm = LLM(
        smollm2_gguf,
        speculative="ngram",
        kv_cache_gb=0.25,
        max_model_len=1024,
        max_num_batched_tokens=2048,
        num_threads=1,
        seed=1234,
    )
    torch.set_num_threads(threads)
    return llm


@pytest.fixture
def llm(spec_llm: LLM) -> Iterator[LLM]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield spec_llm
    torch.set_num_threads(threads)
    bm = spec_llm.engine.block_manager
    assert not spec_llm.engine.requests
    assert bm.num_free_blocks == bm.num_blocks, "KV blocks leaked"


def _greedy(speculate: bool, max_tokens: int = 48) -> SamplingParams:
    return SamplingParams(temperature=0, max_tokens=max_tokens, speculate=speculate)


def _prompts(llm: LLM) -> list[list[int]]:
    return [llm.tokenizer.encode_chat(m, add_generation_prompt=True) for m in [QUOTE, *CHATS]]


def test_greedy_identity_alone_and_in_a_mixed_batch(llm: LLM) -> None:
    prompts = _prompts(llm)
    plain = [llm.generate([p], _greedy(False))[0].outputs[0].token_ids for p in prompts]
    alone = [llm.generate([p], _greedy(True))[0].outputs[0] for p in prompts]
    assert [o.token_ids for o in alone] == plain
    assert alone[0].draft_n_accepted > 20, "prompt lookup should quote the text"
    # mixed: speculating and plain requests, and a prefill, in the same steps
    params = [_greedy(True), _greedy(False), _greedy(True), _greedy(True, 20)]
    outs: list[RequestOutput] = llm.generate([*prompts, prompts[0]], params)
    assert [o.outputs[0].token_ids for o in outs[:3]] == plain
    assert outs[3].outputs[0].token_ids == plain[0][:20]
    assert outs[1].outputs[0].draft_n == 0


def _chi_square_p(a: Counter[int], b: Counter[int]) -> float:
    """Two-sample chi-square test of homogeneity; tokens seen < 10 times pooled."""
    keys = [t for t in a | b if a[t] + b[t] >= 10]
    rows = [[a[t] for t in keys], [b[t] for t in keys]]
    rows[0].append(sum(a.values()) - sum(rows[0]))
    rows[1].append(sum(b.values()) - sum(rows[1]))
    table = torch.tensor(rows, dtype=torch.float64)
    table = table[:, table.sum(0) > 0]
    expected = table.sum(1, keepdim=True) * table.sum(0, keepdim=True) / table.sum()
    stat = ((table - expected) ** 2 / expected).sum()
    df = table.shape[1] - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2.0), stat / 2))


@pytest.mark.slow  # ~35 s: 400 sampled sequences
def test_sampling_first_verified_token_matches_the_distribution(llm: LLM) -> None:
    """The third output token: with speculation it comes from a verification row whenever
    the second matched its draft; its distribution must be the plain one."""
    prompt = _prompts(llm)[0]
    counts: dict[bool, Counter[int]] = {}
    for speculate in (False, True):
        params = SamplingParams(
            n=100, temperature=1.0, max_tokens=3, ignore_eos=True, speculate=speculate
        )
        outs = llm.generate([prompt, prompt], params)
        counts[speculate] = Counter(c.token_ids[2] for o in outs for c in o.outputs)
        if speculate:
            assert sum(c.draft_n_accepted for o in outs for c in o.outputs) > 50
    assert len(counts[False]) > 3, "the test needs a spread distribution"
    assert _chi_square_p(counts[False], counts[True]) > 0.001


def test_grammar_constrained_speculation_yields_only_allowed_tokens(llm: LLM) -> None:
    pattern = (
        r"The old lighthouse stood at the edge of the (cliff|sea) "
        r"for more than (two|three) hundred years\."
    )
    spec = StructuredSpec.regex(pattern)
    prompt = _prompts(llm)[0]
    outs = {}
    for speculate in (False, True):
        params = SamplingParams(temperature=0, max_tokens=60, structured=spec, speculate=speculate)
        outs[speculate] = llm.generate([prompt], params)[0].outputs[0]
    assert re.fullmatch(pattern, outs[True].text)
    assert outs[True].token_ids == outs[False].token_ids
    assert outs[True].draft_n_accepted > 0
    # sampled under the grammar: every completion still matches
    sampled = SamplingParams(n=8, temperature=1.0, max_tokens=60, structured=spec, seed=3)
    for c in llm.generate([prompt], sampled)[0].outputs:
        assert re.fullmatch(pattern, c.text), c.text


@pytest.mark.slow  # loads Gemma 3 (270M) for one test
def test_gemma3_greedy_identity(gemma3_gguf: Path) -> None:
    """Gemma 3: sliding-window layers, Q4_K weights, a base model (plain completion)."""
    threads = torch.get_num_threads()
    gemma = LLM(gemma3_gguf, speculative="ngram", kv_cache_gb=0.1, max_model_len=512, num_threads=1)
    try:
        torch.set_num_threads(1)
        prompt = "Text: " + TEXT + "\n\nThe same text again: The old"
        outs = [
            gemma.generate(
                [prompt], SamplingParams(temperature=0, max_tokens=40, speculate=speculate)
            )[0].outputs[0]
            for speculate in (False, True)
        ]
        assert outs[1].token_ids == outs[0].token_ids
        assert outs[1].draft_n_accepted > 10
        bm = gemma.engine.block_manager
        assert bm.num_free_blocks == bm.num_blocks
    finally:
        torch.set_num_threads(threads)
