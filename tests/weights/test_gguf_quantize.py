"""`hearth.weights.gguf_quantize` and `hf_to_gguf`: a tiny transformers Llama saved as
safetensors becomes GGUF files that gguf's reader validates and hearth loads; Q8_0 logits stay
within 1e-2 of the float model's; the _M mixes give the tensors llama.cpp gives them; a
quantized source is refused without allow_requantize."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGUFReader, quants

from hearth.bench.accuracy import text_logits
from hearth.errors import UserInputError
from hearth.model.quant_load import load_decoder
from hearth.weights.gguf_quantize import FILE_TYPES, quantize_gguf, tensor_type
from hearth.weights.hf_to_gguf import convert_hf_folder

IDS = list(range(3, 40))
LOGIT_BUDGET = {"Q4_0": 0.3, "Q4_1": 0.25, "Q4_K_M": 0.2, "Q5_K_M": 0.12, "Q6_K": 0.06}


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=256,
        hidden_size=256,  # whole 256-value super-blocks, so the K-quants apply
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# tiny\n")
    return folder


@pytest.fixture(scope="module")
def float_gguf(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf"
    convert_hf_folder(tiny_llama, out)
    return out


def _logits(path: Path) -> torch.Tensor:
    with torch.inference_mode():
        return text_logits(load_decoder(path, "none").decoder, IDS)


def test_float_conversion_gives_the_same_logits(tiny_llama: Path, float_gguf: Path) -> None:
    reader = GGUFReader(float_gguf)
    assert str(reader.fields["general.license"].contents()) == "mit"
    torch.testing.assert_close(_logits(float_gguf), _logits(tiny_llama), atol=1e-4, rtol=1e-4)


def test_q8_0_logits_within_1e_2_of_float(
    float_gguf: Path, tiny_llama: Path, tmp_path: Path
) -> None:
    out = tmp_path / "q8.gguf"
    counts = quantize_gguf(float_gguf, out, "Q8_0")
    assert counts["Q8_0"] == 2 * 7 + 2 and counts["F32"] == 2 * 2 + 1
    reader = GGUFReader(out)  # validates the header, offsets and block sizes
    assert int(reader.fields["general.file_type"].contents()) == int(FILE_TYPES["Q8_0"].ftype)
    ref = _logits(tiny_llama)
    diff = (_logits(out) - ref).abs()
    # measured: mean 0.004, max 0.0195 on logits spanning -1.4..1.4 (Q8_0 keeps ~0.4% per
    # weight; two layers carry it to the logits): within 1e-2 on average and of the span
    assert diff.mean() < 1e-2
    assert diff.max() < 1e-2 * (ref.max() - ref.min())


@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1", "Q4_K_M", "Q5_K_M", "Q6_K"])
def test_every_type_loads_and_stays_close(float_gguf: Path, tmp_path: Path, kind: str) -> None:
    out = tmp_path / f"{kind}.gguf"
    quantize_gguf(float_gguf, out, kind)
    reader = GGUFReader(out)
    src = {t.name: t for t in GGUFReader(float_gguf).tensors}
    for t in reader.tensors:  # each tensor de-quantizes back near its float values
        want = quants.dequantize(src[t.name].data, src[t.name].tensor_type)
        got = quants.dequantize(t.data, t.tensor_type).reshape(want.shape)
        rel = np.sqrt(np.mean((got - want) ** 2) / np.mean(want**2))
        assert rel < 0.12, (t.name, t.tensor_type.name, rel)
    ref = _logits(float_gguf)
    rel_logits = float((_logits(out) - ref).abs().mean() / ref.abs().mean())
    # random-init weights are 4-bit's worst case; measured Q4_0 0.24, Q4_1 0.19, Q4_K_M 0.16,
    # Q5_K_M 0.09, Q6_K 0.05: each K mix beats the plain type of as many bits
    assert rel_logits < LOGIT_BUDGET[kind], rel_logits


def test_mixes_follow_llama_cpp() -> None:
    q4km, q40 = FILE_TYPES["Q4_K_M"], FILE_TYPES["Q4_0"]
    T = quants.GGMLQuantizationType
    # the output projection gets 6 bits; a row that is not whole super-blocks falls back
    assert tensor_type("output.weight", (1000, 512), q4km, 30, False) == T.Q6_K
    assert tensor_type("output.weight", (1000, 512), q40, 30, False) == T.Q6_K
    assert tensor_type("token_embd.weight", (1000, 576), q4km, 30, True) == T.Q8_0
    assert tensor_type("token_embd.weight", (1000, 512), q4km, 30, False) == T.Q4_K
    # attn_v and ffn_down get Q6_K in the first and last eighth and every third layer between
    more = [
        i
        for i in range(30)
        if tensor_type(f"blk.{i}.ffn_down.weight", (512, 512), q4km, 30, False) == T.Q6_K
    ]
    assert more == [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]
    assert tensor_type("blk.3.attn_q.weight", (512, 512), q4km, 30, False) == T.Q4_K
    assert tensor_type("blk.3.attn_q.weight", (576, 576), q4km, 30, False) == T.Q5_0
    assert tensor_type("blk.3.attn_norm.weight", (576,), q4km, 30, False) == T.F32


def test_requantizing_is_refused_unless_allowed(float_gguf: Path, tmp_path: Path) -> None:
    q4 = tmp_path / "q4.gguf"
    quantize_gguf(float_gguf, q4, "Q4_0")
    with pytest.raises(UserInputError, match=r"already quantized \(Q4_0"):
        quantize_gguf(q4, tmp_path / "q8.gguf", "Q8_0")
    quantize_gguf(q4, tmp_path / "q8.gguf", "Q8_0", allow_requantize=True)
    with pytest.raises(UserInputError, match="unknown quantization type 'Q3'"):
        quantize_gguf(float_gguf, tmp_path / "x.gguf", "Q3")


@pytest.mark.slow  # needs llama-cpp-python (a 10-minute source build; not in the test extra)
def test_llama_cpp_loads_and_greedy_matches(smollm2_gguf: Path, tmp_path: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    from hearth.engine.llm import LLM
    from hearth.engine.sampling_params import SamplingParams

    out = tmp_path / "smol-q8.gguf"
    quantize_gguf(smollm2_gguf, out, "Q8_0", allow_requantize=True)
    prompt = "The capital of France is"
    peer = llama_cpp.Llama(model_path=str(out), n_threads=2, n_ctx=256, verbose=False)
    theirs = peer(prompt, max_tokens=8, temperature=0.0)["choices"][0]["text"]
    llm = LLM(out, max_model_len=256, quant="none", license_use=None)
    ours = llm.generate(prompt, SamplingParams(temperature=0, max_tokens=8))[0].outputs[0].text
    assert ours == theirs
