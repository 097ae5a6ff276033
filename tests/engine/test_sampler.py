import math

import torch

from hearth.engine.sampler import Sampler, SamplerRow, _apply_penalties, _filter, prompt_logprobs
from hearth.engine.sampling_params import SamplingParams

V = 50


def _row(**kw: object) -> SamplerRow:
    seed = kw.pop("gen_seed", None)
    gen = None
    if seed is not None:
        gen = torch.Generator().manual_seed(int(seed))  # type: ignore[call-overload]
    return SamplerRow(SamplingParams(**kw), [1, 2], [], gen)  # type: ignore[arg-type]


def _logits(n: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, V, generator=torch.Generator().manual_seed(seed)) * 3


def test_greedy_is_argmax() -> None:
    logits = _logits(3)
    out = Sampler(0)(logits, [_row(temperature=0)] * 3)
    assert out.token_ids == logits.argmax(-1).tolist()


def test_top_k_1_and_tiny_top_p_are_greedy() -> None:
    logits = _logits(4, seed=1)
    rows = [_row(top_k=1), _row(top_p=1e-6), _row(min_p=1.0), _row(top_k=1, top_p=0.5)]
    for _ in range(5):
        assert Sampler()(logits, rows).token_ids == logits.argmax(-1).tolist()


def test_top_k_never_samples_outside_the_k_best() -> None:
    logits = _logits(1, seed=2)
    allowed = set(logits[0].topk(3).indices.tolist())
    sampler = Sampler(0)
    seen = {sampler(logits, [_row(top_k=3, temperature=5.0)]).token_ids[0] for _ in range(200)}
    assert seen <= allowed and len(seen) == 3


def test_top_p_keeps_the_nucleus() -> None:
    logits = torch.full((1, V), -30.0)
    logits[0, 4], logits[0, 9], logits[0, 11] = 2.0, 1.5, 0.0
    # p(4) ~ 0.55, p(9) ~ 0.33: top_p 0.8 keeps exactly {4, 9}
    sampler = Sampler(0)
    seen = {sampler(logits, [_row(top_p=0.8)]).token_ids[0] for _ in range(200)}
    assert seen == {4, 9}


def test_sampling_follows_the_distribution() -> None:
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    sampler = Sampler(0)
    counts = torch.zeros(3)
    for _ in range(2000):
        counts[sampler(logits, [_row()]).token_ids[0]] += 1
    assert torch.allclose(counts / 2000, torch.tensor([0.7, 0.2, 0.1]), atol=0.04)


def test_seed_reproducible_whatever_the_batch() -> None:
    logits = _logits(3, seed=3)
    alone = [Sampler()(logits[1:2], [_row(gen_seed=42)]).token_ids[0] for _ in range(1)]
    seq_a: list[int] = []
    seq_b: list[int] = []
    gen_a = torch.Generator().manual_seed(42)
    gen_b = torch.Generator().manual_seed(42)
    for step in range(20):
        batch = [_row(), SamplerRow(SamplingParams(), [], [], gen_a), _row(temperature=0)]
        seq_a.append(Sampler(step)(logits, batch).token_ids[1])
        seq_b.append(
            Sampler(999)(logits[1:2], [SamplerRow(SamplingParams(), [], [], gen_b)]).token_ids[0]
        )
    assert seq_a == seq_b
    assert seq_a[0] == alone[0]
    assert len(set(seq_a)) > 1  # it really samples


def test_penalties_and_bias() -> None:
    logits = torch.zeros(1, V)
    logits[0, 5] = 1.0
    logits[0, 6] = 0.9
    # repetition penalty on a token already in the prompt pushes greedy to the next one
    row = SamplerRow(SamplingParams(temperature=0, repetition_penalty=2.0), [5], [], None)
    assert Sampler()(logits, [row]).token_ids == [6]
    row = SamplerRow(SamplingParams(temperature=0, frequency_penalty=0.2), [], [5], None)
    assert Sampler()(logits, [row]).token_ids == [6]
    row = SamplerRow(SamplingParams(temperature=0, presence_penalty=0.05), [], [5, 5], None)
    assert Sampler()(logits, [row]).token_ids == [5]  # presence counts once: 0.95 > 0.9
    row = SamplerRow(SamplingParams(temperature=0, logit_bias={17: 5.0}), [], [], None)
    assert Sampler()(logits, [row]).token_ids == [17]
    row = SamplerRow(SamplingParams(temperature=0, logit_bias={5: -100.0}), [], [], None)
    assert Sampler()(logits, [row]).token_ids == [6]


def test_logprobs_with_alternatives() -> None:
    logits = _logits(2, seed=4)
    out = Sampler()(logits, [_row(temperature=0, logprobs=3), _row(temperature=0)])
    ref = logits.log_softmax(-1)
    entry = out.logprobs[0]
    assert entry is not None and out.logprobs[1] is None
    top = ref[0].topk(3)
    assert next(iter(entry)) == out.token_ids[0]
    assert entry[out.token_ids[0]].rank == 1
    for rank, (lp, tok) in enumerate(
        zip(top.values.tolist(), top.indices.tolist(), strict=True), 1
    ):
        assert math.isclose(entry[tok].logprob, lp, rel_tol=1e-5)
        assert entry[tok].rank == rank


def test_logprob_token_ids_value_and_rank_whatever_their_place() -> None:
    logits = _logits(2, seed=6)
    ref = logits.log_softmax(-1)
    worst = int(ref[0].argmin())
    wanted = [worst, 7, 7, int(ref[0].argmax())]
    out = Sampler()(
        logits, [_row(temperature=0, logprobs=0, logprob_token_ids=wanted), _row(temperature=0)]
    )
    entry = out.logprobs[0]
    assert entry is not None and out.logprobs[1] is None
    assert set(entry) == set(wanted)  # the greedy token is one of them
    for tok in wanted:
        assert math.isclose(entry[tok].logprob, float(ref[0, tok]), rel_tol=1e-5)
        assert entry[tok].rank == int((ref[0] > ref[0, tok]).sum()) + 1
    assert entry[worst].rank == V and entry[wanted[-1]].rank == 1


def test_prompt_logprobs_rank_and_value() -> None:
    logits = _logits(3, seed=5)
    nxt = [0, 1, 2]
    res = prompt_logprobs(logits, nxt, 2)
    ref = logits.log_softmax(-1)
    for j, tok in enumerate(nxt):
        assert math.isclose(res[j][tok].logprob, float(ref[j, tok]), rel_tol=1e-5)
        assert res[j][tok].rank == int((ref[j] > ref[j, tok]).sum()) + 1
        assert len(res[j]) in (2, 3)


# -- the knobs transformers' logits processors define: their outputs are the reference ------
def _hf_processed(processors: list[object], ids: list[int], logits: torch.Tensor) -> torch.Tensor:
    from transformers import LogitsProcessorList

    input_ids = torch.tensor([ids or [0]], dtype=torch.long).expand(logits.shape[0], -1)
    return LogitsProcessorList(processors)(input_ids, logits.clone())  # type: ignore[arg-type]


def test_repetition_penalty_window_matches_transformers() -> None:
    from transformers import RepetitionPenaltyLogitsProcessor

    logits = _logits(1, seed=5)
    prompt, output = [3, 7, 7, 11, 40, 2], [9, 3, 21]
    for last_n, window in [
        (-1, prompt + output),  # vLLM's and HF's: every token so far
        (2, output[-2:]),  # inside the output
        (5, prompt[-2:] + output),  # reaching back into the prompt
        (64, prompt + output),  # Ollama's default, longer than the text
    ]:
        params = SamplingParams(temperature=0, repetition_penalty=1.3, repeat_last_n=last_n)
        mine = logits.clone()
        _apply_penalties(mine, [SamplerRow(params, prompt, output)])
        ref = _hf_processed([RepetitionPenaltyLogitsProcessor(1.3)], window, logits)
        torch.testing.assert_close(mine, ref, rtol=0, atol=0)
    # 0: no window, no penalty (Ollama's "disabled")
    off = SamplingParams(repetition_penalty=1.3, repeat_last_n=0)
    assert not off.uses_penalties
    # the window decides greedy: token 5 is penalised only while it is among the last 2
    logits = torch.zeros(1, V)
    logits[0, 5], logits[0, 6] = 1.0, 0.9
    row = SamplerRow(
        SamplingParams(temperature=0, repetition_penalty=2.0, repeat_last_n=2), [5], [8]
    )
    assert Sampler()(logits, [row]).token_ids == [6]
    row = SamplerRow(
        SamplingParams(temperature=0, repetition_penalty=2.0, repeat_last_n=2), [5], [8, 8]
    )
    assert Sampler()(logits, [row]).token_ids == [5]


def _row_params(**kw: object) -> SamplerRow:
    return SamplerRow(SamplingParams(**kw), [], [])  # type: ignore[arg-type]


def test_typical_p_matches_transformers() -> None:
    from transformers import TypicalLogitsWarper

    logits = _logits(4, seed=6)
    logits[3, 10:] = float("-inf")  # a row a grammar or top-k already narrowed
    for mass in (0.2, 0.5, 0.9, 0.99):
        probs = _filter(logits, [_row_params(typical_p=mass)] * 4)
        ref = _hf_processed([TypicalLogitsWarper(mass)], [], logits).softmax(-1)
        torch.testing.assert_close(probs, ref)
        assert bool((probs > 0).sum(-1).ge(1).all())
    # 1 disables it: the plain softmax
    torch.testing.assert_close(_filter(logits, [_row_params()] * 4), logits.softmax(-1))


def test_min_p_and_the_whole_chain_match_transformers() -> None:
    from transformers import (
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
        TypicalLogitsWarper,
    )

    logits = _logits(3, seed=7)
    probs = _filter(logits, [_row_params(min_p=0.1)] * 3)
    ref = _hf_processed([MinPLogitsWarper(0.1)], [], logits).softmax(-1)
    torch.testing.assert_close(probs, ref)
    # generate()'s order: temperature, top-k, top-p, min-p, typical-p
    knobs = {"temperature": 0.7, "top_k": 30, "top_p": 0.95, "min_p": 0.02, "typical_p": 0.8}
    chain = [
        TemperatureLogitsWarper(0.7),
        TopKLogitsWarper(30),
        TopPLogitsWarper(0.95),
        MinPLogitsWarper(0.02),
        TypicalLogitsWarper(0.8),
    ]
    probs = _filter(logits, [_row_params(**knobs)] * 3)
    torch.testing.assert_close(probs, _hf_processed(chain, [], logits).softmax(-1))
    # rows with and without typical-p in one batch each get their own
    mixed = _filter(logits, [_row_params(typical_p=0.5), _row_params(), _row_params(top_k=3)])
    torch.testing.assert_close(mixed[1], logits[1].softmax(-1))
    assert int((mixed[2] > 0).sum()) == 3


def test_typical_p_sampling_stays_in_the_typical_set() -> None:
    logits = _logits(1, seed=8)
    allowed = set(_filter(logits, [_row_params(typical_p=0.3)])[0].nonzero()[:, 0].tolist())
    sampler = Sampler(0)
    seen = {sampler(logits, [_row(typical_p=0.3)]).token_ids[0] for _ in range(200)}
    assert seen <= allowed and len(allowed) < V
