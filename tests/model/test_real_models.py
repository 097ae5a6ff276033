"""Real weights, end to end: SmolLM2-135M-Instruct (llama, Q4_1) and Gemma-3-270M (gemma3,
Q4_K_M) loaded from GGUF by hearth (load_gguf → build_model) and by transformers
(`gguf_file=`, the fp32 reference): same prompts of several lengths — Gemma's longest is past
its 512-token sliding window — give logits within 1e-3, and the greedy 32-token
continuation through hearth's paged KV cache equals transformers'."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from sequence_runner import SequenceRunner, greedy_generate
from tiny_models import backend_under_test

from hearth.model.build import build_model
from hearth.model.layers.decoder import Decoder
from hearth.weights.gguf import load_gguf

LOGITS_TOLERANCE = 1e-3
NEW_TOKENS = 32

_SENTENCES = [
    "The printing press spread across Europe within fifty years of its invention.",
    "Cheap books changed how scholars argued, because everyone could cite the same page.",
    "In Venice, Aldus Manutius printed small italic editions that fit in a coat pocket.",
    "Paper mills multiplied along rivers, and rag collectors became a trade of their own.",
    "Censors soon followed the printers, compiling lists of forbidden titles.",
    "Newspapers appeared in the seventeenth century, first as weekly sheets of foreign news.",
    "By the nineteenth century, steam presses printed thousands of sheets every hour.",
    "Typesetting stayed manual until the Linotype machine cast whole lines of metal type.",
]
CODE = (
    "def merge_sorted(a: list[int], b: list[int]) -> list[int]:\n"
    '    """Merge two sorted lists into one sorted list."""\n'
    "    out, i, j = [], 0, 0\n"
    "    while i < len(a) and j < len(b):\n"
    "        if a[i] <= b[j]:\n"
    "            out.append(a[i]); i += 1\n"
    "        else:\n"
    "            out.append(b[j]); j += 1\n"
)


def _prose(num_tokens: int, tokenizer: Any) -> list[int]:
    """At least num_tokens of varied prose, cut to exactly num_tokens."""
    text, k = "", 0
    while len(tokenizer(text)["input_ids"]) < num_tokens:
        text += _SENTENCES[k % len(_SENTENCES)] + (" " if k % 3 else "\n")
        k += 1
    return list(tokenizer(text)["input_ids"][:num_tokens])


def _hearth(path: Path) -> Decoder:
    loaded = load_gguf(path)
    return build_model(loaded.config, loaded.tensors, backend=backend_under_test())


@torch.inference_mode()
def _hf_greedy(model: Any, prompt: list[int], n: int) -> list[int]:
    # a plain loop (not generate) so an end-of-turn token does not stop one side early
    out = model(torch.tensor([prompt]), use_cache=True)
    tokens: list[int] = []
    while True:
        tokens.append(int(out.logits[0, -1].argmax()))
        if len(tokens) == n:
            return tokens
        out = model(
            torch.tensor([tokens[-1:]]), past_key_values=out.past_key_values, use_cache=True
        )


def _compare(hearth: Decoder, hf_model: Any, prompts: list[list[int]]) -> None:
    runner = SequenceRunner(hearth, len(prompts), max(len(p) for p in prompts))
    # all prompts in one flat batch, as the engine lays them out
    ours = runner.step(list(enumerate(prompts)))
    for prompt, logits in zip(prompts, ours, strict=True):
        with torch.inference_mode():
            ref = hf_model(torch.tensor([prompt])).logits[0].float()
        diff = (logits - ref).abs().max().item()
        assert diff <= LOGITS_TOLERANCE, f"{len(prompt)}-token prompt: max |Δlogit| {diff}"


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf: Path) -> Decoder:
    return _hearth(smollm2_gguf)


@pytest.fixture(scope="module")
def gemma3(gemma3_gguf: Path) -> Decoder:
    return _hearth(gemma3_gguf)


def test_smollm2_logits(smollm2: Decoder, hf_smollm2_model: Any, hf_smollm2_tokenizer: Any) -> None:
    tok = hf_smollm2_tokenizer
    prompts = [tok("Hello")["input_ids"], tok(CODE)["input_ids"], _prose(160, tok)]
    _compare(smollm2, hf_smollm2_model, prompts)


def test_smollm2_greedy(smollm2: Decoder, hf_smollm2_model: Any, hf_smollm2_tokenizer: Any) -> None:
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = hf_smollm2_tokenizer.apply_chat_template(
        chat, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    ours = greedy_generate(smollm2, list(prompt), NEW_TOKENS)
    assert ours == _hf_greedy(hf_smollm2_model, list(prompt), NEW_TOKENS)
    assert "Paris" in hf_smollm2_tokenizer.decode(ours)


def test_gemma3_logits(gemma3: Decoder, hf_gemma3_model: Any, hf_gemma3_tokenizer: Any) -> None:
    tok = hf_gemma3_tokenizer
    prompts = [tok("Hello")["input_ids"], tok(CODE)["input_ids"], _prose(530, tok)]
    assert len(prompts[-1]) > gemma3.config.sliding_window  # type: ignore[operator]
    _compare(gemma3, hf_gemma3_model, prompts)


def test_gemma3_greedy(gemma3: Decoder, hf_gemma3_model: Any, hf_gemma3_tokenizer: Any) -> None:
    prompt = list(hf_gemma3_tokenizer("The capital of France is")["input_ids"])
    ours = greedy_generate(gemma3, prompt, NEW_TOKENS)
    assert ours == _hf_greedy(hf_gemma3_model, prompt, NEW_TOKENS)
    assert "France" in hf_gemma3_tokenizer.decode(ours)  # a base model: it rambles, on topic
