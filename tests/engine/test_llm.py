"""The LLM API on real SmolLM2 weights: greedy batches (chunked) == alone == transformers,
prefix caching, chat. One LLM for the session; every test leaves the pool empty."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from hearth.engine.engine_config import EngineConfig
from hearth.engine.llm import LLM, model_defaults
from hearth.engine.sampling_params import SamplingParams
from hearth.errors import ContextLengthError, InvalidParameterError

QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "Write a haiku about rain.",
    "What is 12 times 7?",
    "Who wrote Romeo and Juliet?",
    "Give me a synonym for happy.",
    "Explain gravity in one sentence.",
    "What language is spoken in Brazil?",
]


@pytest.fixture(scope="session")
def smollm2_llm(smollm2_gguf: Path) -> LLM:
    threads = torch.get_num_threads()
    # a 64-token step budget: the chat prompts (~35 tokens each) are prefilled in chunks;
    # quant="none": the de-quantized network is what transformers' reference computes
    llm = LLM(
        smollm2_gguf,
        quant="none",
        kv_cache_gb=0.25,
        max_model_len=1024,
        max_num_batched_tokens=64,
        num_threads=1,
    )
    torch.set_num_threads(threads)
    return llm


@pytest.fixture
def llm(smollm2_llm: LLM) -> Iterator[LLM]:
    # one thread: on a shared CPU, OpenMP threads spinning against other processes make a
    # 135M model many times slower (measured here: 1.1 vs 25 tokens/s single stream)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield smollm2_llm
    torch.set_num_threads(threads)
    bm = smollm2_llm.engine.block_manager
    assert not smollm2_llm.engine.requests
    assert bm.num_free_blocks == bm.num_blocks


def _three_ways(llm: LLM, hf_model: Any, questions: list[str], max_tokens: int) -> list[list[int]]:
    """Greedy ids of the chat prompts run as one batch; asserts they equal each prompt run
    alone and transformers' greedy `generate`."""
    tok = llm.tokenizer
    prompts = [tok.encode_chat([{"role": "user", "content": q}]) for q in questions]
    params = SamplingParams(temperature=0, max_tokens=max_tokens)
    batched = [o.outputs[0].token_ids for o in llm.generate(prompts, params)]
    for prompt, got in zip(prompts, batched, strict=True):
        alone = llm.generate([prompt], params)[0].outputs[0].token_ids
        with torch.no_grad():
            ref = hf_model.generate(
                torch.tensor([prompt]),
                max_new_tokens=max_tokens,
                do_sample=False,
                attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            )[0, len(prompt) :].tolist()
        assert got == alone == ref, tok.decode(prompt)
    return batched


def test_eight_prompts_batched_equal_alone_and_transformers(
    llm: LLM, hf_smollm2_model: Any
) -> None:
    """The issue's proof: 8 prompts in one batch with chunked prefill, 32 greedy tokens."""
    batched = _three_ways(llm, hf_smollm2_model, QUESTIONS, 32)
    assert "Paris" in llm.tokenizer.decode(batched[0])


def test_prefix_cache_on_real_weights(llm: LLM) -> None:
    llm.engine.block_manager.reset_prefix_cache()
    g = torch.Generator().manual_seed(0)
    shared = torch.randint(100, 40000, (200,), generator=g).tolist()
    params = SamplingParams(temperature=0, max_tokens=4, ignore_eos=True)
    llm.generate([[*shared, 500, 501]], params)
    before = llm.engine.metrics()
    second = [*shared, 900, 901, 902]
    (cached,) = llm.generate([second], params)
    after = llm.engine.metrics()
    assert cached.num_cached_tokens == 192
    assert after.prompt_tokens_total - before.prompt_tokens_total == len(second) - 192
    llm.engine.block_manager.reset_prefix_cache()
    (fresh,) = llm.generate([second], params)
    assert fresh.num_cached_tokens == 0
    assert fresh.outputs[0].token_ids == cached.outputs[0].token_ids


def test_chat_and_text_prompts(llm: LLM) -> None:
    (out,) = llm.chat(
        [{"role": "user", "content": QUESTIONS[0]}], SamplingParams(temperature=0, max_tokens=20)
    )
    assert out.outputs[0].text == "The capital of France is Paris."
    assert out.outputs[0].finish_reason == "stop"
    (plain,) = llm.generate("The capital of France is", SamplingParams(temperature=0, max_tokens=5))
    assert plain.prompt == "The capital of France is" and plain.outputs[0].text


def test_bad_requests(llm: LLM) -> None:
    with pytest.raises(ContextLengthError) as info:
        llm.generate([list(range(5, 1200))])
    assert "1195" in str(info.value) and "1024" in str(info.value)
    with pytest.raises(InvalidParameterError):
        llm.generate("hi", SamplingParams(max_tokens=0))


def test_engine_options_are_forwarded_to_engine_config(smollm2_gguf: Path) -> None:
    # LLM takes an EngineConfig; keywords are forwarded onto it, never re-declared
    with pytest.raises(TypeError, match=r"max_model_length.*EngineConfig fields are"):
        LLM(smollm2_gguf, max_model_length=512)


@pytest.fixture(scope="module")
def default_llm(smollm2_gguf: Path) -> Iterator[LLM]:
    """SmolLM2 as `LLM(path)` opens it by default (the file's own quantization)."""
    threads = torch.get_num_threads()
    llm = LLM(smollm2_gguf, EngineConfig(max_model_len=512, kv_cache_gb=0.1, seed=0), num_threads=1)
    yield llm
    torch.set_num_threads(threads)


def test_default_is_the_files_own_quantization(default_llm: LLM) -> None:
    # SmolLM2's Q4_1 weights stay int4 instead of being de-quantized to fp32
    assert default_llm.quant == "auto"
    kinds = {type(m).__name__ for m in default_llm.engine.runner.model.modules()}
    assert "Int4Linear" in kinds and "Linear" not in kinds
    assert default_llm.max_model_len == 512


def test_chat_without_params_uses_the_models_defaults(default_llm: LLM) -> None:
    """No vLLM bare defaults (16 tokens, temperature 1.0): a bounded limit and the sampling
    defaults every other entry point uses."""
    params = default_llm.default_sampling_params()
    assert params.max_tokens == 1024 and params.temperature == 0.8
    assert params.repetition_penalty == 1.0 and params.top_k == 40
    (out,) = default_llm.chat([{"role": "user", "content": "Name three primary colors."}])
    completion = out.outputs[0]
    assert len(completion.token_ids) > 16 or completion.finish_reason == "stop"
    assert completion.finish_reason == "stop", completion.text


def test_catalog_names_get_the_catalogs_parameters() -> None:
    smollm2 = model_defaults("smollm2", {"eos_token_id": 2}, has_chat_template=True)
    assert smollm2.temperature == 0.2 and smollm2.sources["temperature"] == "catalog"
    assert smollm2.max_tokens == 1024 and smollm2.stop == ()
    # a base model (no chat template) gets completion-style defaults: short, stop at a blank line
    gemma = model_defaults("gemma3:270m", {}, has_chat_template=False)
    assert gemma.max_tokens == 256 and gemma.stop == ("\n\n",)
    assert (gemma.temperature, gemma.top_k, gemma.top_p) == (1.0, 64, 0.95)
    # a path is no catalog name: the file's own values over Ollama's
    path = model_defaults("/models/x.gguf", {"temp": 0.6, "top_k": 20}, has_chat_template=True)
    assert (path.temperature, path.top_k, path.top_p) == (0.6, 20, 0.9)
