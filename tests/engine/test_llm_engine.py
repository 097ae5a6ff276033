"""The engine end to end over a tiny random llama (fast): batching, chunked prefill,
prefix caching, preemption, seeds, stop strings, n > 1, aborts, errors. The reference is a
plain full-recompute greedy loop over transformers' model with the same weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from hearth.engine.engine_config import GIB
from hearth.engine.llm_engine import LLMEngine
from hearth.engine.outputs import RequestOutput
from hearth.engine.sampling_params import SamplingParams
from hearth.errors import CapacityError, ContextLengthError, UserInputError
from hearth.model.kv_cache import kv_cache_bytes_per_block

GREEDY = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)


def _prompts(n: int, lengths: list[int], seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randint(3, 40000, (lengths[i % len(lengths)],), generator=g).tolist()
        for i in range(n)
    ]


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


def _hf_greedy(hf_model: Any, prompt: list[int], n: int) -> list[int]:
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            logits = hf_model(torch.tensor([ids])).logits[0, -1]
            ids.append(int(logits.argmax()))
    return ids[len(prompt) :]


def _blocks_gb(config: Any, num_blocks: int, block_size: int = 16) -> float:
    return num_blocks * kv_cache_bytes_per_block(config, block_size, torch.float32) / GIB


def test_batched_chunked_greedy_equals_alone_equals_transformers(
    make_engine: Callable[..., LLMEngine], tiny_llama: tuple[Any, Any]
) -> None:
    prompts = _prompts(8, [5, 17, 33, 60, 9, 48, 2, 31])
    engine = make_engine(max_num_batched_tokens=16)  # forces chunked prefill
    batched = [o.outputs[0].token_ids for o in _run(engine, prompts, GREEDY)]
    alone_engine = make_engine()
    alone = [_run(alone_engine, [p], GREEDY)[0].outputs[0].token_ids for p in prompts]
    assert batched == alone
    reference = [_hf_greedy(tiny_llama[1], p, 12) for p in prompts]
    assert batched == reference
    assert len({tuple(b) for b in batched}) > 4  # the prompts really lead to different text


def test_prefix_cache_computes_only_new_tokens_and_matches(
    make_engine: Callable[..., LLMEngine],
) -> None:
    (shared,) = _prompts(1, [200], seed=2)
    a, b = [*shared, 11, 12, 13], [*shared, 21, 22, 23, 24, 25]
    engine = make_engine()
    _run(engine, [a], GREEDY)
    before = engine.metrics()
    (out_b,) = _run(engine, [b], GREEDY)
    after = engine.metrics()
    cached = (200 // 16) * 16
    assert out_b.num_cached_tokens == cached
    assert after.prefix_cache_hit_tokens - before.prefix_cache_hit_tokens == cached
    assert after.prompt_tokens_total - before.prompt_tokens_total == len(b) - cached
    (plain,) = _run(make_engine(enable_prefix_caching=False), [b], GREEDY)
    assert out_b.outputs[0].token_ids == plain.outputs[0].token_ids


def test_preemption_when_the_pool_is_too_small(
    make_engine: Callable[..., LLMEngine], tiny_llama: tuple[Any, Any]
) -> None:
    prompts = _prompts(4, [40, 35, 44, 38], seed=3)
    params = SamplingParams(temperature=0, max_tokens=30, ignore_eos=True)
    # each needs 5 blocks at the end; 12 blocks cannot hold the 4 at once
    engine = make_engine(kv_cache_gb=_blocks_gb(tiny_llama[0], 12), max_num_batched_tokens=64)
    outs = _run(engine, prompts, params)
    assert engine.metrics().num_preemptions > 0
    alone_engine = make_engine()
    alone = [_run(alone_engine, [p], params)[0].outputs[0].token_ids for p in prompts]
    assert [o.outputs[0].token_ids for o in outs] == alone


def test_seeded_sampling_whatever_the_batch(make_engine: Callable[..., LLMEngine]) -> None:
    (prompt,) = _prompts(1, [20], seed=4)
    seeded = SamplingParams(temperature=1.0, top_p=0.95, seed=1234, max_tokens=16, ignore_eos=True)
    engine = make_engine(max_num_batched_tokens=24)
    alone = _run(engine, [prompt], seeded)[0].outputs[0].token_ids
    others = _prompts(5, [7, 30, 12], seed=5)
    noisy = SamplingParams(temperature=1.0, max_tokens=10)
    mixed = _run(engine, [*others[:3], prompt, *others[3:]], [noisy] * 3 + [seeded] + [noisy] * 2)
    assert mixed[3].outputs[0].token_ids == alone
    other_seed = _run(engine, [prompt], SamplingParams(temperature=1.0, seed=99, max_tokens=16))
    assert other_seed[0].outputs[0].token_ids != alone


def test_n_shares_prompt_blocks_and_seeds_each_completion(
    make_engine: Callable[..., LLMEngine],
) -> None:
    (prompt,) = _prompts(1, [50], seed=6)
    engine = make_engine()
    params = SamplingParams(n=3, temperature=1.0, seed=7, max_tokens=8, ignore_eos=True)
    (out,) = _run(engine, [prompt], params)
    assert [c.index for c in out.outputs] == [0, 1, 2]
    # siblings 1 and 2 took the first one's 3 full prompt blocks from the cache
    assert engine.metrics().prefix_cache_hit_tokens == 2 * 48
    for i, completion in enumerate(out.outputs):
        single = SamplingParams(temperature=1.0, seed=7 + i, max_tokens=8, ignore_eos=True)
        assert _run(engine, [prompt], single)[0].outputs[0].token_ids == completion.token_ids


def test_stop_string_spanning_tokens_stops_exactly(make_engine: Callable[..., LLMEngine]) -> None:
    engine = make_engine()
    prompt = "Once upon a time"
    params = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True)
    full = _run(engine, [prompt], params)[0].outputs[0]
    tok = engine.tokenizer
    pieces = [tok.decode(full.token_ids[: i + 1]) for i in range(len(full.token_ids))]
    # a stop string made of the end of one token's text and the start of the next one's
    k = next(
        i
        for i in range(3, len(pieces) - 1)
        if len(pieces[i]) - len(pieces[i - 1]) >= 2 and len(pieces[i + 1]) - len(pieces[i]) >= 2
    )
    cut = len(pieces[k]) - 1
    stop = full.text[cut : cut + 2]
    assert full.text.find(stop) == cut, "pick a stop string that first occurs at the boundary"
    streamed: list[str] = []
    engine.add_request(
        "s", prompt, SamplingParams(temperature=0, max_tokens=24, ignore_eos=True, stop=[stop])
    )
    final = None
    while engine.has_unfinished_requests():
        for out in engine.step():
            streamed.append(out.outputs[0].delta_text)
            final = out
    assert final is not None
    c = final.outputs[0]
    assert c.text == full.text[:cut]
    assert "".join(streamed) == c.text  # nothing streamed was taken back
    assert c.finish_reason == "stop" and c.stop_reason == stop
    assert len(c.token_ids) == k + 2  # stopped on the token that completed the string


def test_stop_token_ids_and_length(make_engine: Callable[..., LLMEngine]) -> None:
    engine = make_engine()
    (prompt,) = _prompts(1, [10], seed=8)
    full = _run(engine, [prompt], GREEDY)[0].outputs[0]
    assert full.finish_reason == "length" and len(full.token_ids) == 12
    target = full.token_ids[4]
    first = full.token_ids.index(target)
    stopped = _run(
        engine, [prompt], SamplingParams(temperature=0, max_tokens=12, stop_token_ids=[target])
    )
    c = stopped[0].outputs[0]
    assert c.token_ids == full.token_ids[: first + 1]
    assert c.finish_reason == "stop" and c.stop_reason == target


def test_abort_mid_stream_frees_blocks_at_once(make_engine: Callable[..., LLMEngine]) -> None:
    engine = make_engine(max_num_batched_tokens=8)
    prompts = _prompts(3, [30, 20, 25], seed=9)
    for i, p in enumerate(prompts):
        engine.add_request(f"a{i}", p, SamplingParams(max_tokens=50))
    for _ in range(6):
        engine.step()
    assert engine.block_manager.num_used_blocks > 0
    for i in range(3):
        engine.abort(f"a{i}")
    assert engine.block_manager.num_used_blocks == 0
    assert not engine.has_unfinished_requests()
    engine.abort("a0")  # twice, or unknown: ignored


def test_model_error_fails_the_request_without_leaks(
    make_engine: Callable[..., LLMEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine()
    engine.add_request("x", [5, 6, 7, 8], GREEDY)
    engine.step()

    def broken(*args: Any) -> Any:
        raise RuntimeError("kernel failed")

    monkeypatch.setattr(engine.runner.model, "forward", broken)
    (out,) = engine.step()
    assert out.finished and isinstance(out.error, RuntimeError)
    assert "kernel failed" in str(out.error)
    assert not engine.has_unfinished_requests()
    assert engine.block_manager.num_used_blocks == 0


def test_logprobs_and_prompt_logprobs_match_transformers(
    make_engine: Callable[..., LLMEngine], tiny_llama: tuple[Any, Any]
) -> None:
    (prompt,) = _prompts(1, [37], seed=10)
    engine = make_engine(max_num_batched_tokens=16)  # prompt logprobs over 3 chunks
    params = SamplingParams(
        temperature=0, max_tokens=3, ignore_eos=True, logprobs=2, prompt_logprobs=1
    )
    (out,) = _run(engine, [prompt], params)
    c = out.outputs[0]
    ids = prompt + c.token_ids
    with torch.no_grad():
        ref = tiny_llama[1](torch.tensor([ids])).logits[0].log_softmax(-1)  # (L, V)
    assert out.prompt_logprobs is not None and out.prompt_logprobs[0] is None
    assert len(out.prompt_logprobs) == len(prompt)
    for j in range(1, len(prompt)):
        entry = out.prompt_logprobs[j]
        assert entry is not None
        assert entry[prompt[j]].logprob == pytest.approx(float(ref[j - 1, prompt[j]]), abs=1e-4)
        assert entry[prompt[j]].decoded is not None
    assert c.logprobs is not None and len(c.logprobs) == 3
    for i, tok in enumerate(c.token_ids):
        pos = len(prompt) - 1 + i
        assert c.logprobs[i][tok].rank == 1
        assert c.logprobs[i][tok].logprob == pytest.approx(float(ref[pos, tok]), abs=1e-4)
        assert len(c.logprobs[i]) == 2  # the greedy token is also the top-1 alternative
    assert c.cumulative_logprob == pytest.approx(
        sum(float(ref[len(prompt) - 1 + i, t]) for i, t in enumerate(c.token_ids)), abs=1e-3
    )


def test_prompt_logprobs_start_scores_the_tail_and_reuses_the_prefix(
    make_engine: Callable[..., LLMEngine],
) -> None:
    """Scoring continuations after a shared context (the eval harness's case): logprobs
    from `start` on equal the full request's, earlier ones are None, and the second
    continuation takes the shared context from the prefix cache."""
    (shared,) = _prompts(1, [70], seed=11)
    a, b = [*shared, 11, 12, 13], [*shared, 21, 22]
    full = SamplingParams(temperature=0, max_tokens=1, prompt_logprobs=0)
    (ref_a, ref_b) = _run(make_engine(enable_prefix_caching=False), [a, b], full)
    engine = make_engine(max_num_batched_tokens=32)
    tail = SamplingParams(temperature=0, max_tokens=1, prompt_logprobs=0, prompt_logprobs_start=70)
    before = engine.metrics()
    out_a, out_b = _run(engine, [a, b], tail)
    after = engine.metrics()
    for out, ref in ((out_a, ref_a), (out_b, ref_b)):
        plp, want = out.prompt_logprobs, ref.prompt_logprobs
        assert plp is not None and want is not None and len(plp) == len(want)
        assert all(e is None for e in plp[:70])
        for j in range(70, len(plp)):
            got_e, want_e = plp[j], want[j]
            assert got_e is not None and want_e is not None
            tok = out.prompt_token_ids[j]
            assert got_e[tok].logprob == pytest.approx(want_e[tok].logprob, abs=1e-4)
            assert got_e[tok].rank == want_e[tok].rank
    # b's first 64 tokens (4 full blocks before position 69) came from a's blocks
    assert out_b.num_cached_tokens == 64
    assert after.prefix_cache_hit_tokens - before.prefix_cache_hit_tokens == 64
    assert after.prompt_tokens_total - before.prompt_tokens_total == len(a) + len(b) - 64
    with pytest.raises(UserInputError, match="prompt_logprobs_start"):
        engine.add_request(
            "past", [5, 6, 7], SamplingParams(prompt_logprobs=0, prompt_logprobs_start=3)
        )


def test_logprob_token_ids_equal_the_prompt_logprobs_of_each_candidate(
    make_engine: Callable[..., LLMEngine],
) -> None:
    """Several next tokens of one prompt scored by one request (an eval's one-token
    answers) give what scoring prompt + candidate with prompt logprobs gives."""
    (prompt,) = _prompts(1, [41], seed=12)
    candidates = (5, 9, 17, 30)
    engine = make_engine()
    one = SamplingParams(temperature=0, max_tokens=1, logprobs=0, logprob_token_ids=candidates)
    (out,) = _run(engine, [prompt], one)
    logprobs = out.outputs[0].logprobs
    assert logprobs is not None and len(logprobs) == 1
    entry = logprobs[0]
    full = SamplingParams(temperature=0, max_tokens=1, prompt_logprobs=0)
    refs = _run(make_engine(enable_prefix_caching=False), [[*prompt, c] for c in candidates], full)
    for tok, ref in zip(candidates, refs, strict=True):
        assert ref.prompt_logprobs is not None
        want = ref.prompt_logprobs[-1]
        assert want is not None
        assert entry[tok].logprob == pytest.approx(want[tok].logprob, abs=1e-5)
        assert entry[tok].rank == want[tok].rank
    with pytest.raises(UserInputError, match="logprob_token_ids"):
        engine.add_request(
            "outside", [5, 6], SamplingParams(logprobs=0, logprob_token_ids=(10**6,))
        )


def test_bad_input(make_engine: Callable[..., LLMEngine], tiny_llama: tuple[Any, Any]) -> None:
    engine = make_engine(max_model_len=64)
    with pytest.raises(ContextLengthError) as info:
        engine.add_request("long", list(range(3, 103)), GREEDY)
    assert "100" in str(info.value) and "64" in str(info.value)
    with pytest.raises(UserInputError, match="outside the vocabulary"):
        engine.add_request("bad", [1, 10**6], GREEDY)
    with pytest.raises(UserInputError, match="empty"):
        engine.add_request("empty", [], GREEDY)
    engine.add_request("dup", [4, 5], GREEDY)
    with pytest.raises(UserInputError, match="already in use"):
        engine.add_request("dup", [4, 5], GREEDY)
    engine.abort("dup")
    per_block = kv_cache_bytes_per_block(tiny_llama[0], 16, torch.float32)
    with pytest.raises(CapacityError) as cap:
        make_engine(kv_cache_gb=per_block / 2 / GIB)
    assert str(per_block) in str(cap.value)


def test_generation_stops_at_the_context_end(make_engine: Callable[..., LLMEngine]) -> None:
    engine = make_engine(max_model_len=32)
    (out,) = _run(
        engine,
        [list(range(3, 23))],
        SamplingParams(temperature=0, max_tokens=None, ignore_eos=True),
    )
    assert out.outputs[0].finish_reason == "length"
    assert len(out.prompt_token_ids) + len(out.outputs[0].token_ids) == 32
