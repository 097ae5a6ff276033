"""An rsLoRA adapter exported as gguf-lora is applied by llama.cpp itself (llama-cpp-python,
`lora_path`) at PEFT's scale, alpha / sqrt(r). llama.cpp scales every GGUF LoRA by
alpha / r and its files carry no rsLoRA flag (llama.cpp's convert_lora_to_gguf.py ignores
use_rslora), so hearth's exporter folds sqrt(r) into B.

The base is a tiny float32 llama (transformers makes it, hearth's hf_to_gguf writes it with
SmolLM2's tokenizer) and llama.cpp keeps its KV cache in float32 here, so llama.cpp, PEFT on
transformers and hearth compute the same float32 network: the logits agree within 1e-4
(measured: 1.2e-5 at an adapter effect of 10.9), not only within quantization noise. The
same file written as llama.cpp's own converter would (no fold) is sqrt(16) = 4 times too
weak in llama.cpp (off by 9.8): the check can fail. hearth serving the same .gguf (its GGUF
LoRA reader, llama.cpp's alpha / r rule) gives llama.cpp's log-probabilities and greedy."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hearth.tune.adapter_files import load_adapter
from hearth.tune.gguf_lora import write_gguf_lora

pytestmark = pytest.mark.slow  # needs llama-cpp-python (not in the test extra)

IDS = [1, 504, 3458, 314, 4370, 30, 2, 7, 12, 99, 1500, 280]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, hf_smollm2_tokenizer: Any) -> Any:
    """(the tiny llama's HF folder, its float32 GGUF, the transformers model)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from hearth.weights.hf_to_gguf import convert_hf_folder

    folder = tmp_path_factory.mktemp("tiny-llama-rslora")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        initializer_range=0.2, tie_word_embeddings=False,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)
    hf_smollm2_tokenizer.save_pretrained(folder)
    convert_hf_folder(folder, folder / "tiny-f32.gguf")
    return folder, folder / "tiny-f32.gguf", model


def _peft_rslora(model: Any, folder: Path) -> Any:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(3)
    config = LoraConfig(
        r=16, lora_alpha=16, use_rslora=True, init_lora_weights=False,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                        "down_proj"],
    )  # fmt: skip
    peft = get_peft_model(copy.deepcopy(model), config).eval()
    peft.save_pretrained(str(folder))
    return peft


def _llama_logits(llama_cpp: Any, base: Path, lora: Path, seq: list[int] = IDS) -> np.ndarray:
    llm = llama_cpp.Llama(
        model_path=str(base), lora_path=str(lora), lora_scale=1.0, n_ctx=64, n_threads=1,
        n_threads_batch=1, logits_all=True, verbose=False, type_k=0, type_v=0,  # f32 KV cache
    )  # fmt: skip
    try:
        llm.eval(seq)
        return np.array(llm.scores[: len(seq)], dtype=np.float32)
    finally:
        llm.close()


def test_llama_cpp_applies_an_exported_rslora_at_pefts_scale(tiny: Any, tmp_path: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    from hearth.engine.llm import LLM
    from hearth.engine.sampling_params import SamplingParams

    _, base_gguf, model = tiny
    peft = _peft_rslora(model, tmp_path / "peft")
    adapter = load_adapter(tmp_path / "peft")
    assert adapter.lora.rslora and adapter.lora.rank == 16
    # as `hearth export` writes it: with the base's name and digest, which llama.cpp ignores
    adapter = replace(adapter, base_name="tiny:latest", base_digest="sha256:" + "0" * 64)
    write_gguf_lora(adapter, "llama", 2, 4, 2, tmp_path / "rs.gguf")
    with torch.no_grad():
        want = peft(torch.tensor([IDS])).logits[0].float().numpy()
        plain = model(torch.tensor([IDS])).logits[0].float().numpy()
    effect = float(np.abs(want - plain).max())
    assert effect > 1.0  # the adapter moves the logits far more than the tolerance

    theirs = _llama_logits(llama_cpp, base_gguf, tmp_path / "rs.gguf")
    assert float(np.abs(theirs - want).max()) <= 1e-4

    # as llama.cpp's converter writes it (alpha kept, B not folded): llama.cpp applies
    # alpha / r, a quarter of the update
    unfolded = replace(adapter, lora=replace(adapter.lora, rslora=False))
    write_gguf_lora(unfolded, "llama", 2, 4, 2, tmp_path / "plain.gguf")
    weak = _llama_logits(llama_cpp, base_gguf, tmp_path / "plain.gguf")
    assert float(np.abs(weak - want).max()) > 0.25 * effect

    # hearth serving the same .gguf beside the same base: the same logits, the same greedy
    llm = LLM(base_gguf, max_model_len=64, quant="none", license_use=None, num_threads=1)
    llm.load_lora("rs", tmp_path / "rs.gguf")
    params = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True, prompt_logprobs=0)
    ours = llm.generate([IDS], params, lora="rs")[0]
    assert ours.prompt_logprobs is not None
    theirs_lp = torch.log_softmax(torch.from_numpy(theirs), -1)
    for i in range(1, len(IDS)):
        step = ours.prompt_logprobs[i]
        assert step is not None
        assert abs(step[IDS[i]].logprob - float(theirs_lp[i - 1, IDS[i]])) <= 1e-4
    greedy = list(ours.outputs[0].token_ids)
    with torch.no_grad():
        peft_greedy = peft.generate(
            torch.tensor([IDS]), max_new_tokens=6, do_sample=False, min_new_tokens=6
        )[0, len(IDS) :].tolist()
    assert greedy == peft_greedy
    seq = IDS + greedy[:-1]
    theirs_seq = _llama_logits(llama_cpp, base_gguf, tmp_path / "rs.gguf", seq)
    assert theirs_seq[len(IDS) - 1 :].argmax(-1).tolist() == greedy

