"""Self-speculation and a draft model on real weights: SmolLM2 Q4_1 drafting for itself
(the same file: nearly every draft is accepted) and SmolLM2's (and Gemma 3's) own first
layers drafting give the non-speculative greedy output token for token, alone and in a
batch with a request that does not speculate; every KV block, the target's and the draft
engine's, is back in the pool after each test; Gemma 3 as a draft for SmolLM2 is refused
naming both models.

The drafters draft every step here (`speculator.always`): the pays-or-stops policy would
soon turn the early exit off on these models (not trained for it), and the test is of
verification, not of the policy (test_model_drafters.py tests that)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from hearth.engine.llm import LLM
from hearth.engine.outputs import CompletionOutput
from hearth.engine.sampling_params import SamplingParams
from hearth.errors import UserInputError

TEXT = (
    "The old lighthouse stood at the edge of the cliff for more than two hundred years. "
    "Every night its keeper climbed the narrow stairs to light the lamp."
)
CHATS = [
    [{"role": "user", "content": "Repeat this text word for word:\n\n" + TEXT}],
    [{"role": "user", "content": "Write a short poem about autumn leaves."}],
]


def _load(path: Path, **options: object) -> LLM:
    threads = torch.get_num_threads()
    llm = LLM(path, kv_cache_gb=0.1, max_model_len=512, num_threads=1, seed=0, **options)
    torch.set_num_threads(threads)
    assert llm.engine.speculator is not None
    llm.engine.speculator.always = True
    return llm


@pytest.fixture(scope="module")
def drafting(smollm2_gguf: Path) -> dict[str, LLM]:
    return {
        "draft": _load(smollm2_gguf, speculative="draft", draft_model=str(smollm2_gguf)),
        "self": _load(smollm2_gguf, speculative="self"),
    }


@pytest.fixture
def one_thread(drafting: dict[str, LLM]) -> Iterator[dict[str, LLM]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield drafting
    torch.set_num_threads(threads)
    for llm in drafting.values():
        _assert_idle(llm)


def _assert_idle(llm: LLM) -> None:
    assert llm.engine.speculator is not None
    draft = llm.engine.speculator.new_drafter(None).engine  # type: ignore[arg-type,attr-defined]
    for engine in (llm.engine, draft):
        bm = engine.block_manager
        assert not engine.requests and bm.num_free_blocks == bm.num_blocks, "KV blocks leaked"


def _greedy(speculate: bool, max_tokens: int = 32) -> SamplingParams:
    return SamplingParams(temperature=0, max_tokens=max_tokens, speculate=speculate)


def _outputs(llm: LLM, prompts: list[list[int]], params: list[SamplingParams]) -> list[CompletionOutput]:
    return [o.outputs[0] for o in llm.generate(prompts, params)]


@pytest.mark.parametrize("mode", ["draft", "self"])
def test_greedy_identity_alone_and_in_a_mixed_batch(one_thread: dict[str, LLM], mode: str) -> None:
    llm = one_thread[mode]
    prompts = [llm.tokenizer.encode_chat(c, add_generation_prompt=True) for c in CHATS]
    plain = [_outputs(llm, [p], [_greedy(False)])[0].token_ids for p in prompts]
    alone = _outputs(llm, prompts[:1], [_greedy(True)])[0]
    assert alone.token_ids == plain[0]
    mixed = _outputs(llm, [*prompts, prompts[0]], [_greedy(True), _greedy(False), _greedy(True, 9)])
    assert [o.token_ids for o in mixed] == [*plain, plain[0][:9]]
    assert mixed[1].draft_n == 0 and mixed[0].draft_n > 0
    if mode == "draft":  # the same model drafts: (nearly) every draft is its own next token
        assert alone.draft_n_accepted >= 0.8 * alone.draft_n > 0


@pytest.mark.slow  # loads Gemma 3 (270M)
def test_gemma3_self_speculation_greedy_identity(gemma3_gguf: Path) -> None:
    """Gemma 3: sliding-window and global layers, sandwich norms, soft-capped logits, Q4_K."""
    gemma = _load(gemma3_gguf, speculative="self")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        prompt = "Text: " + TEXT + "\n\nThe same text again: The old"
        outs = [
            gemma.generate([prompt], _greedy(speculate, 24))[0].outputs[0]
            for speculate in (False, True)
        ]
        assert outs[1].token_ids == outs[0].token_ids and outs[1].draft_n > 0
        _assert_idle(gemma)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow  # loads SmolLM2 and the Gemma 3 tokenizer (~35 s)
def test_gemma3_draft_for_smollm2_is_refused_naming_both(
    smollm2_gguf: Path, gemma3_gguf: Path
) -> None:
    with pytest.raises(UserInputError) as refused:
        LLM(smollm2_gguf, speculative="draft", draft_model=str(gemma3_gguf), kv_cache_gb=0.05)
    message = str(refused.value)
    assert f"the draft model {gemma3_gguf} cannot draft for {smollm2_gguf}" in message
    assert "262144 tokens" in message and "49152" in message
