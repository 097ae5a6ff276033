"""The drafters that run a model (model_drafter.py) over the tiny random llama: self-
speculation (its first layer drafts) and a draft model (a second copy of the same weights:
its drafts are the target's greedy tokens) give the non-speculative greedy output token
for token, alone and batched with requests that do not speculate; the draft engine's KV
blocks come back too; the pays-or-stops policy turns a drafter that is never right off;
the mode / draft-model rules and the vocabulary check refuse what cannot work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from hearth.engine.engine_config import (
    EngineConfig,
    request_speculation,
    self_draft_layers,
)
from hearth.engine.llm import build_engine
from hearth.engine.llm_engine import LLMEngine
from hearth.engine.outputs import RequestOutput
from hearth.engine.sampling_params import SamplingParams
from hearth.engine.spec.draft_loading import LoadedDraft, resolve_speculation
from hearth.engine.spec.model_drafter import DraftRunner, check_same_vocabulary
from hearth.errors import InvalidParameterError, UserInputError

GREEDY = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True)
OFF = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True, speculate=False)


def _prompts(n: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(4)
    return [torch.randint(3, 40000, (12 + 5 * i,), generator=g).tolist() for i in range(n)]


def _run(engine: LLMEngine, prompts: list[list[int]], params: list[SamplingParams]) -> list[Any]:
    for i, (p, sp) in enumerate(zip(prompts, params, strict=True)):
        engine.add_request(f"r{i}", p, sp)
    final: dict[str, RequestOutput] = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                final[out.request_id] = out
    return [final[f"r{i}"].outputs[0] for i in range(len(prompts))]


def _runner(engine: LLMEngine) -> DraftRunner:
    assert engine.speculator is not None
    drafter = engine.speculator.new_drafter(None)  # type: ignore[arg-type]
    assert isinstance(drafter, DraftRunner)
    return drafter


def _draft_engine(tiny_llama: tuple[Any, Any], tokenizer: Any, **kwargs: Any) -> LLMEngine:
    """An engine whose draft model is a second copy of the tiny llama."""
    from hearth.model.build import build_model

    config, hf_model = tiny_llama
    tensors = {k: v.detach().clone() for k, v in hf_model.state_dict().items()}
    target = build_model(config, tensors, torch.float32)
    draft = LoadedDraft(
        "tiny-draft", config, build_model(config, tensors, torch.float32), tokenizer, torch.float32
    )
    engine_config = EngineConfig(kv_cache_gb=0.01, speculative="draft", **kwargs)
    return build_engine(config, target, tokenizer, engine_config, torch.float32, draft)


def test_self_speculation_greedy_identity_alone_and_mixed(
    make_engine: Callable[..., LLMEngine],
) -> None:
    prompts = _prompts(3)
    plain = [o.token_ids for o in _run(make_engine(), prompts, [GREEDY] * 3)]
    engine = make_engine(speculative="self")
    assert engine.speculator is not None
    engine.speculator.always = True  # draft every step, however poorly the first layer does
    assert [o.token_ids for o in _run(engine, prompts[:1], [GREEDY])] == plain[:1]
    outs = _run(engine, prompts, [GREEDY, OFF, GREEDY])
    assert [o.token_ids for o in outs] == plain
    assert outs[1].draft_n == 0 and outs[0].draft_n > 0 and outs[2].draft_n > 0
    draft = _runner(engine).engine
    assert draft.runner.model.num_layers == 1  # type: ignore[attr-defined]
    assert len(draft.runner.kv_caches) == 1  # the draft layer's cache only
    bm = draft.block_manager
    assert not draft.requests and bm.num_free_blocks == bm.num_blocks


def test_draft_model_greedy_identity_and_full_acceptance(
    make_engine: Callable[..., LLMEngine], tiny_llama: tuple[Any, Any], smollm2_tokenizer: Any
) -> None:
    prompts = _prompts(3)
    plain = [o.token_ids for o in _run(make_engine(), prompts, [GREEDY] * 3)]
    torch.set_num_threads(1)
    engine = _draft_engine(tiny_llama, smollm2_tokenizer)
    assert engine.speculator is not None
    engine.speculator.always = True
    outs = _run(engine, prompts, [GREEDY, OFF, GREEDY])
    assert [o.token_ids for o in outs] == plain
    assert outs[1].draft_n == 0
    for o in (outs[0], outs[2]):  # the same weights draft: every draft is the target's token
        assert o.draft_n > 10 and o.draft_n_accepted == o.draft_n
    for e in (engine, _runner(engine).engine):
        bm = e.block_manager
        assert not e.requests and bm.num_free_blocks == bm.num_blocks, "KV blocks leaked"


def test_pays_or_stops_turns_a_useless_self_draft_off(
    make_engine: Callable[..., LLMEngine],
) -> None:
    """The random model's first layer rarely predicts its two-layer output: drafting every
    step wastes hundreds of drafts; "self" stops after a few steps of rejected drafts, then
    probes one token now and then (and the output is the same)."""
    prompts = _prompts(1)
    long = [SamplingParams(temperature=0, max_tokens=120, ignore_eos=True)]
    drafted, tokens = {}, []
    for always in (True, False):
        engine = make_engine(speculative="self")
        assert engine.speculator is not None
        engine.speculator.always = always
        tokens.append(_run(engine, prompts, long)[0].token_ids)
        m = engine.metrics()
        if always:
            assert m.spec_accepted_tokens_total < m.spec_draft_tokens_total / 4  # a poor draft
        drafted[always] = m.spec_draft_tokens_total
    assert tokens[0] == tokens[1]
    assert drafted[True] > 300
    assert drafted[False] < 60


def test_modes_and_draft_models_refused_as_usage_errors() -> None:
    assert resolve_speculation("auto", None, None) == ("auto", None)
    assert resolve_speculation("auto", None, "tiny:1") == ("draft", "tiny:1")  # Modelfile DRAFT
    assert resolve_speculation("ngram", None, "tiny:1") == ("ngram", None)  # explicit wins
    assert resolve_speculation("draft", "a.gguf", "tiny:1") == ("draft", "a.gguf")
    with pytest.raises(UserInputError, match="needs a draft model"):
        resolve_speculation("draft", None, None)
    with pytest.raises(UserInputError, match=r"--draft a\.gguf drafts with --speculative draft"):
        resolve_speculation("self", "a.gguf", None)
    assert self_draft_layers(30, None) == 7 and self_draft_layers(2, None) == 1
    with pytest.raises(UserInputError, match=r"give 1\.\.29"):
        self_draft_layers(30, 30)
    with pytest.raises(ValueError, match="self_draft_layers must be >= 1"):
        EngineConfig(speculative="self", self_draft_layers=0)
    assert request_speculation("off", "draft") is False
    assert request_speculation("auto", "self") is True and request_speculation("self", "self")
    with pytest.raises(InvalidParameterError, match="a request may ask for off, auto or ngram"):
        request_speculation("draft", "ngram")


def test_draft_without_a_draft_model_is_refused(
    tiny_llama: tuple[Any, Any], smollm2_tokenizer: Any
) -> None:
    from hearth.model.build import build_model

    config, hf_model = tiny_llama
    model = build_model(config, dict(hf_model.state_dict()), torch.float32)
    with pytest.raises(UserInputError, match="--speculative draft needs a draft model"):
        build_engine(
            config, model, smollm2_tokenizer, EngineConfig(kv_cache_gb=0.01, speculative="draft"),
            torch.float32,
        )  # fmt: skip


class _Vocab:
    """A tokenizer's vocabulary alone (what check_same_vocabulary reads)."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.vocab_size = len(tokens)

    def encoded_vocab(self) -> list[str]:
        return self.tokens


def test_vocabulary_check_names_both_models(smollm2_tokenizer: Any) -> None:
    check_same_vocabulary("big", smollm2_tokenizer, "small", smollm2_tokenizer)
    other = _Vocab(smollm2_tokenizer.encoded_vocab())
    other.tokens = [*other.tokens[:100], "zzz", *other.tokens[101:]]
    with pytest.raises(UserInputError, match=r"small cannot draft for big: token 100 is 'zzz'"):
        check_same_vocabulary("big", smollm2_tokenizer, "small", other)
    with pytest.raises(UserInputError, match="its vocabulary has 3 tokens, big's has 49152"):
        check_same_vocabulary("big", smollm2_tokenizer, "small", _Vocab(["a", "b", "c"]))
