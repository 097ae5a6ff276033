"""Tensor parallel over real processes (gloo on 127.0.0.1): a tiny llama split over 2 ranks
gives the single-process model's logits (within 1e-4, fp32) and its greedy tokens through
the engine; a worker that dies fails the request with a retryable CapacityError and every
later step at once. Real SmolLM2 / Gemma 3 parity: test_tensor_parallel_real.py (slow)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from hearth.engine.engine_config import EngineConfig
from hearth.engine.llm import build_engine
from hearth.engine.sampling_params import SamplingParams
from hearth.engine.tensor_parallel import TPConfig, TPDriver, start
from hearth.errors import CapacityError
from hearth.model.batch import AttentionMetadata
from hearth.model.build import build_model
from hearth.model.kv_cache import allocate_kv_caches
from hearth.model.layers.decoder import Decoder
from hearth.model.layers.ops import Ops
from hearth.weights.loader import LoadedWeights, load_weights

# odd, so the vocabulary-parallel rows are padded; below SmolLM2's, whose tokenizer
# detokenizes the tiny model's ids
VOCAB = 49151


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-tp")
    torch.manual_seed(0)
    hf = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            initializer_range=0.2,
            tie_word_embeddings=True,
            attention_bias=True,
        )
    )
    hf.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def weights(tiny_folder: Path) -> LoadedWeights:
    return load_weights(tiny_folder)


@pytest.fixture(scope="module")
def reference(weights: LoadedWeights) -> Decoder:
    return build_model(weights.config, weights.tensors, backend=Ops())


@pytest.fixture(scope="module")
def driver(tiny_folder: Path, weights: LoadedWeights) -> Iterator[TPDriver]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    made = start(tiny_folder, weights, TPConfig(2), torch.float32, threads=1)
    yield made
    made.close()
    torch.set_num_threads(threads)


def _step(model: Any, caches: Any, ids: list[list[int]], starts: list[int]) -> torch.Tensor:
    """One flat step of several sequences (block i is sequence i's, 16 tokens each); the
    logits of every token."""
    flat = [t for seq in ids for t in seq]
    pos = [p for seq, s in zip(ids, starts, strict=True) for p in range(s, s + len(seq))]
    slots = [i * 16 + p for i, (seq, s) in enumerate(zip(ids, starts, strict=True))
             for p in range(s, s + len(seq))]  # fmt: skip
    meta = AttentionMetadata(
        [len(seq) for seq in ids],
        torch.tensor([s + len(seq) for seq, s in zip(ids, starts, strict=True)], dtype=torch.int32),
        torch.tensor(slots),
        torch.arange(len(ids), dtype=torch.int32)[:, None],
        16,
    )
    with torch.inference_mode():
        return model.compute_logits(
            model.forward(torch.tensor(flat), torch.tensor(pos), meta, caches)
        )


def test_two_ranks_give_the_single_process_logits(
    driver: TPDriver, reference: Decoder, weights: LoadedWeights
) -> None:
    caches = driver.allocate_kv_caches(2, 16, torch.float32)
    ref_caches = allocate_kv_caches(weights.config, 2, 16, torch.float32)
    prompts = [[5, 900, 31, 4000, 12], [49150, 7, 7, 300]]  # the vocabulary's last id too
    got = _step(driver, caches, prompts, [0, 0])
    want = _step(reference, ref_caches, prompts, [0, 0])
    assert got.shape == (9, VOCAB)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    # a decode step over the cached prefixes (each rank's own KV heads)
    got = _step(driver, caches, [[17], [23]], [5, 4])
    want = _step(reference, ref_caches, [[17], [23]], [5, 4])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_greedy_tokens_through_the_engine_are_the_single_process_ones(
    driver: TPDriver, reference: Decoder, weights: LoadedWeights, smollm2_tokenizer: Any
) -> None:
    config = EngineConfig(kv_cache_gb=0.01, max_model_len=128)
    params = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
    prompts = [[1, 500, 600, 700], [1, 9, 8, 7, 6, 5, 4, 3]]

    def greedy(model: Any) -> list[list[int]]:
        engine = build_engine(weights.config, model, smollm2_tokenizer, config, torch.float32)
        for i, prompt in enumerate(prompts):
            engine.add_request(f"r{i}", prompt, params)
        done: dict[str, list[int]] = {}
        while engine.has_unfinished_requests():
            for out in engine.step():
                assert out.error is None
                if out.finished:
                    done[out.request_id] = list(out.outputs[0].token_ids)
        return [done[f"r{i}"] for i in range(len(prompts))]

    want = greedy(reference)
    assert greedy(driver) == want
    assert all(len(tokens) == 12 for tokens in want)


def test_a_worker_that_dies_fails_the_request_cleanly(
    tiny_folder: Path, weights: LoadedWeights, smollm2_tokenizer: Any
) -> None:
    made = start(tiny_folder, weights, TPConfig(2), torch.float32, threads=1)
    try:
        engine = build_engine(
            weights.config,
            made,
            smollm2_tokenizer,
            EngineConfig(kv_cache_gb=0.01),
            torch.float32,
        )
        params = SamplingParams(max_tokens=200, temperature=0, ignore_eos=True)
        engine.add_request("a", [1, 2, 3], params)
        engine.step()  # the prefill ran on both ranks
        made.workers[0].kill()
        made.workers[0].join(10)
        errors = []
        while engine.has_unfinished_requests():
            errors += [out.error for out in engine.step() if out.error is not None]
        (error,) = errors
        assert isinstance(error, CapacityError) and error.retry_after
        assert "worker rank 1 stopped" in str(error) and "retry" in str(error)
        assert made.broken is not None
        engine.add_request("b", [1, 2, 3], params)  # later requests fail at once, cleanly
        outs = [out for out in engine.step() if out.error is not None]
        assert isinstance(outs[0].error, CapacityError)
        assert not engine.has_unfinished_requests()
        assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks
    finally:
        made.close()


@pytest.mark.slow
def test_ranks_on_another_host_join_through_tp_worker(
    tiny_folder: Path, weights: LoadedWeights, reference: Decoder, tmp_path: Path
) -> None:
    """--nnodes 2: rank 1 comes from `hearth tp-worker` (another host's command, here another
    process on loopback) meeting rank 0 at MASTER_ADDR / MASTER_PORT."""
    import os
    import subprocess
    import sys

    from hearth.engine.ranks import free_port

    port = free_port("127.0.0.1")
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "HEARTH_HOME": str(tmp_path / "home"), "HEARTH_NUM_THREADS": "1"}  # fmt: skip
    argv = ["tp-worker", str(tiny_folder), "--tensor-parallel", "2", "--nnodes", "2",
            "--node-rank", "1"]  # fmt: skip
    node = subprocess.Popen([sys.executable, "-m", "hearth", *argv], env=env)
    try:
        tp = TPConfig(2, nnodes=2, host="127.0.0.1", port=port)
        made = start(tiny_folder, weights, tp, torch.float32, threads=1)
        assert made.workers == []  # none spawned here: rank 1 is the other host's
        caches = made.allocate_kv_caches(1, 16, torch.float32)
        got = _step(made, caches, [[3, 1, 4, 1, 5]], [0])
        want = _step(reference, allocate_kv_caches(weights.config, 1, 16, torch.float32),
                     [[3, 1, 4, 1, 5]], [0])  # fmt: skip
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
        made.close()
        assert node.wait(60) == 0  # told to stop, the other host's ranks end
    finally:
        node.kill()
