"""The engine backend on hearth's real engine (`hearth.engine.llm.LLM`) over a tiny random
llama saved as an HF folder: log-likelihoods equal the transformers reference, the
continuation-only prompt logprobs reuse the shared context from the prefix cache (the
counters show it), and `hearth eval FOLDER --backend hearth` runs all six tasks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_runner import Cli
from eval_tiny_lm import MMLU_SUBJECTS, HFReferenceLM, TinyTokenizer, save_tiny_folder

from hearth.eval.backends.engine_backend import EngineLM
from hearth.eval.tasks import get_task
from hearth.eval.tasks.base import Settings


@pytest.fixture(scope="module")
def tiny_folder(
    tmp_path_factory: pytest.TempPathFactory, tiny_hf_model: Any, tiny_tokenizer: TinyTokenizer
) -> Path:
    return save_tiny_folder(tiny_hf_model, tiny_tokenizer, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def one_thread() -> Iterator[None]:
    # a tiny model gains nothing from threads; on a shared CPU a second one spins
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_engine_scores_equal_reference_and_share_the_context(
    eval_data: Path, tiny_folder: Path, reference_lm: HFReferenceLM, one_thread: None
) -> None:
    from hearth.engine.llm import LLM

    llm = LLM(tiny_folder, num_threads=1, kv_cache_gb=0.05)
    lm = EngineLM.from_llm(llm)
    items = get_task("arc_challenge").build(eval_data, Settings(num_fewshot=5, limit=3))
    requests = [r for item in items for r in item.requests]
    got = lm.loglikelihood(requests)
    want = reference_lm.loglikelihood(requests)
    assert [g for g, _ in got] == pytest.approx([w for w, _ in want], abs=1e-3)
    assert [g for _, g in got] == [w for _, w in want]
    m = llm.engine.metrics()
    # each item's context is computed once: its other choices take it from the cache
    num_tokens = sum(len(lm._prompt(c, x)[0]) for c, x in requests)
    assert m.prompt_tokens_total + m.prefix_cache_hit_tokens == num_tokens
    assert m.prompt_tokens_total < 0.5 * num_tokens


def test_engine_scores_one_token_answers_in_one_request(
    eval_data: Path, tiny_folder: Path, reference_lm: HFReferenceLM, one_thread: None
) -> None:
    from hearth.engine.llm import LLM

    llm = LLM(tiny_folder, num_threads=1, kv_cache_gb=0.05)
    lm = EngineLM.from_llm(llm)
    items = get_task("mmlu").build(eval_data, Settings(num_fewshot=2, limit=3))
    requests = [r for item in items for r in item.requests]
    got = lm.loglikelihood(requests)
    want = reference_lm.loglikelihood(requests)
    assert [g for g, _ in got] == pytest.approx([w for w, _ in want], abs=1e-3)
    assert [g for _, g in got] == [w for _, w in want]
    assert llm.engine.metrics().generation_tokens_total == len(items)  # one request each


def test_winogrande_options_share_their_opening_through_the_scheduler(
    eval_data: Path, tiny_folder: Path, reference_lm: HFReferenceLM, one_thread: None
) -> None:
    """Requests go in task order, all at once: the scheduler's in-flight prefix wait alone
    makes every request take the full blocks it shares with an earlier one (the few-shot
    text, and the sentence up to the option) from the cache instead of computing them."""
    from hearth.engine.llm import LLM

    llm = LLM(tiny_folder, num_threads=1, kv_cache_gb=0.05, max_num_batched_tokens=4096)
    lm = EngineLM.from_llm(llm)
    items = get_task("winogrande").build(eval_data, Settings(num_fewshot=2, limit=4))
    requests = [r for item in items for r in item.requests]
    got = lm.loglikelihood(requests)
    want = reference_lm.loglikelihood(requests)
    assert [g for g, _ in got] == pytest.approx([w for w, _ in want], abs=1e-3)
    prompts = [lm._prompt(c, x) for c, x in requests]
    bs = llm.engine.config.block_size

    def common(a: list[int], b: list[int]) -> int:
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    shareable = [
        max(common(ids, prompts[j][0]) for j in range(i)) if i else 0
        for i, (ids, _) in enumerate(prompts)
    ]
    # only tokens before the scored continuation can come from the cache
    expected = sum(
        min(s, len(ids) - n) // bs * bs for s, (ids, n) in zip(shareable, prompts, strict=True)
    )
    assert expected > 0
    # one step could take them all (4096 tokens): only the wait makes them share
    assert llm.engine.metrics().prefix_cache_hit_tokens >= expected


def test_hearth_backend_cli_end_to_end(
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    eval_data: Path,
    tiny_folder: Path,
    hearth_home: Path,
    one_thread: None,
) -> None:
    monkeypatch.setenv("HEARTH_EVAL_DATA", str(eval_data))
    monkeypatch.setenv("HEARTH_NUM_THREADS", "1")
    monkeypatch.setenv("HEARTH_KV_CACHE_GB", "0.05")
    code, out, err = cli(
        "eval", str(tiny_folder), "--tasks", "leaderboard", "--limit", "3",
        "--max-gen-tokens", "16", "--json",
    )  # fmt: skip
    assert code == 0, err
    reports = json.loads(out)
    assert [r["task"] for r in reports] == [
        "arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2", "winogrande", "gsm8k",
    ]  # fmt: skip
    for r in reports:
        assert r["backend"] == "hearth" and r["items_per_s"] > 0
        assert r["num_items"] == (3 * MMLU_SUBJECTS if r["task"] == "mmlu" else 3)
        assert all(0.0 <= m["value"] <= 1.0 for m in r["results"])
