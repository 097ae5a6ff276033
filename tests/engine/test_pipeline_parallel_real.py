"""Pipeline parallel on the real models, 2 stages over loopback: SmolLM2-135M (30 layers,
15 a stage) and Gemma-3-270M (18 layers; sliding and global layers on both stages):
logits equal the single-process reference model's within 1e-4 (fp32) over a prefill and
decode steps, and greedy text through `LLM` is the single-process `LLM`'s. Both are slow
(about a minute each); the tiny-model parity test in test_pipeline_parallel.py runs in CI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from hearth.engine.llm import LLM
from hearth.engine.sampling_params import SamplingParams
from hearth.model.batch import AttentionMetadata
from hearth.model.build import build_model
from hearth.model.kv_cache import allocate_kv_caches
from hearth.model.layers.ops import Ops
from hearth.weights.loader import load_weights

CASES = [
    pytest.param("smollm2_gguf", "chat", id="smollm2", marks=pytest.mark.slow),
    pytest.param("gemma3_gguf", "The capital of France is", id="gemma3", marks=pytest.mark.slow),
]


def _logits(model: Any, caches: Any, ids: list[int]) -> torch.Tensor:
    """A prefill of ids[:-3], then one decode step per remaining id; every step's logits."""
    n = len(ids) - 3
    out = []
    with torch.inference_mode():
        for start, chunk in [(0, ids[:n])] + [(n + i, [t]) for i, t in enumerate(ids[n:])]:
            end = start + len(chunk)
            meta = AttentionMetadata(
                [len(chunk)],
                torch.tensor([end], dtype=torch.int32),
                torch.arange(start, end),
                torch.arange(-(-end // 16), dtype=torch.int32)[None],
                16,
            )
            hidden = model.forward(torch.tensor(chunk), torch.arange(start, end), meta, caches)
            out.append(model.compute_logits(hidden))
    return torch.cat(out)


@pytest.mark.parametrize(("fixture", "prompt"), CASES)
def test_two_stages_match_one_process(
    request: pytest.FixtureRequest, fixture: str, prompt: str
) -> None:
    path: Path = request.getfixturevalue(fixture)
    params = SamplingParams(max_tokens=16, temperature=0)
    options: dict[str, Any] = dict(quant="none", license_use=None, kv_cache_gb=0.05)

    def answer(llm: LLM) -> str:
        if prompt == "chat":
            messages = [{"role": "user", "content": "What is the capital of France?"}]
            return llm.chat(messages, params)[0].outputs[0].text
        return llm.generate(prompt, params)[0].outputs[0].text

    one = LLM(path, **options)
    want_text = answer(one)
    ids = list(one.tokenizer.encode("The quick brown fox jumps over the lazy dog, and then"))
    one.engine.shutdown()
    del one

    split = LLM(path, pipeline_parallel=2, **options)
    try:
        assert answer(split) == want_text
        driver = split.engine.runner.model
        got = _logits(driver, driver.allocate_kv_caches(4, 16, torch.float32), ids)
    finally:
        split.engine.shutdown()

    weights = load_weights(path, torch.float32)
    reference = build_model(weights.config, weights.tensors, backend=Ops())
    caches = allocate_kv_caches(weights.config, 4, 16, torch.float32)
    want = _logits(reference, caches, ids)
    assert got.shape == want.shape == (len(ids), weights.config.vocab_size)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
