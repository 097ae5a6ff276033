"""GGUF LoRA adapters per sequence on the tiny llama: PEFT makes random adapters (one plain
on all seven projections, one rsLoRA on three), hearth's exporter writes them as llama.cpp
GGUF LoRAs (q/k rows of B permuted, rsLoRA's sqrt(r) folded into B), and the engine loads the
.gguf files beside the base. Rows with either adapter and none, in one batch, give PEFT's
logits; greedy text is the PEFT-folder adapters' text; files that are not a LoRA for this
base are refused naming what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from peft_adapters import assert_one_batch_matches, gguf_lora_of, peft_adapter

from hearth.engine.llm_engine import LLMEngine
from hearth.engine.sampling_params import SamplingParams
from hearth.errors import UserInputError

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16], [5, 6, 7, 8, 9, 10, 11]]
LORAS = ["a", "b", None]


@pytest.fixture(scope="module")
def adapters(tiny_llama: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """name -> (PEFT folder, its .gguf, the PEFT model)."""
    _, hf_model = tiny_llama
    root = tmp_path_factory.mktemp("gguf-adapters")
    made = {
        "a": peft_adapter(hf_model, root / "a", 1, 8, ALL),
        "b": peft_adapter(hf_model, root / "b", 2, 4, ["q_proj", "v_proj", "down_proj"],
                          use_rslora=True),
    }  # fmt: skip
    return {
        name: (root / name, gguf_lora_of(root / name, root / f"{name}.gguf", 2, 4, 2), model)
        for name, model in made.items()
    }


def _engine(make_engine: Callable[..., LLMEngine], adapters: Any, which: int) -> LLMEngine:
    engine = make_engine(max_lora_rank=8)
    for name, files in adapters.items():
        engine.add_lora(name, files[which])
    return engine


def test_gguf_adapters_in_one_batch_give_pefts_logits(
    make_engine: Callable[..., LLMEngine], tiny_llama: Any, adapters: Any
) -> None:
    engine = _engine(make_engine, adapters, 1)
    _, base = tiny_llama
    reference_of = {name: made[2] for name, made in adapters.items()}
    assert_one_batch_matches(engine, base, PROMPTS, LORAS, reference_of)


def _greedy(engine: LLMEngine) -> list[list[int]]:
    for i, (prompt, lora) in enumerate(zip(PROMPTS, LORAS, strict=True)):
        params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True, lora=lora)
        engine.add_request(str(i), prompt, params)
    done: dict[str, list[int]] = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            assert out.error is None
            if out.finished:
                done[out.request_id] = out.outputs[0].token_ids
    return [done[str(i)] for i in range(len(PROMPTS))]


def test_greedy_text_is_the_peft_folders_text(
    make_engine: Callable[..., LLMEngine], adapters: Any
) -> None:
    from_gguf = _greedy(_engine(make_engine, adapters, 1))
    assert from_gguf == _greedy(_engine(make_engine, adapters, 0))
    assert from_gguf[0] != from_gguf[2]  # the adapter changes the text


def test_the_same_file_shares_kv_blocks_and_another_file_does_not(
    make_engine: Callable[..., LLMEngine], adapters: Any
) -> None:
    engine = make_engine(max_lora_rank=8)
    engine.add_lora("a", adapters["a"][1])
    engine.add_lora("a2", adapters["a"][1])  # the same file under another name
    engine.add_lora("peft", adapters["a"][0])
    keys = {n: engine.adapters.get(n).key for n in ("a", "a2", "peft")}  # type: ignore[union-attr]
    assert keys["a"] == keys["a2"] != keys["peft"]


def _write(path: Path, arch: str, tensors: dict[str, np.ndarray], **kv: Any) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, kv.pop("adapter_type", "lora"))
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 8.0)
    for key, value in kv.items():
        writer.add_string(key, value)
    for name, value in tensors.items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_files_that_are_not_a_lora_for_this_base_are_refused(
    make_engine: Callable[..., LLMEngine], adapters: Any, nc_gguf: Path, tmp_path: Path
) -> None:
    engine = make_engine(max_lora_rank=8)
    with pytest.raises(UserInputError, match=r"is a model, not an adapter .*load this file as"):
        engine.add_lora("model", nc_gguf)
    a = np.ones((4, 64), np.float32)
    v_b = np.ones((32, 4), np.float32)
    other = _write(tmp_path / "gemma.gguf", "gemma3", {"blk.0.attn_v.weight.lora_a": a,
                                                       "blk.0.attn_v.weight.lora_b": v_b})  # fmt: skip
    with pytest.raises(UserInputError, match=r"LoRA for a gemma3 model, but this model is llama"):
        engine.add_lora("other", other)
    # a llama adapter of another width: named with both shapes
    wide = _write(tmp_path / "wide.gguf", "llama", {
        "blk.0.attn_v.weight.lora_a": np.ones((4, 96), np.float32),
        "blk.0.attn_v.weight.lora_b": v_b,
    })  # fmt: skip
    with pytest.raises(UserInputError, match=r"32x96 but this model's is 32x64.*another base"):
        engine.add_lora("wide", wide)
    cvec = _write(tmp_path / "cvec.gguf", "llama", {"blk.0.attn_v.weight.lora_a": a},
                  adapter_type="cvec")  # fmt: skip
    with pytest.raises(UserInputError, match="is a cvec adapter"):
        engine.add_lora("cvec", cvec)
    embed = _write(tmp_path / "embed.gguf", "llama", {
        "token_embd.weight.lora_a": a, "token_embd.weight.lora_b": np.ones((49152, 4), np.float32)
    })  # fmt: skip
    with pytest.raises(UserInputError, match=r"targets model.embed_tokens, which this model"):
        engine.add_lora("embed", embed)
    # hearth's own files name their base's digest: a mismatch names both
    named = _write(
        tmp_path / "named.gguf",
        "llama",
        {"blk.0.attn_v.weight.lora_a": a, "blk.0.attn_v.weight.lora_b": v_b},
        **{"hearth.base": "gemma3:270m", "hearth.base_digest": "sha256:" + "1" * 64},
    )
    engine.base_name, engine.base_digest = "smollm2:135m", "sha256:" + "2" * 64
    with pytest.raises(UserInputError, match=r"made for gemma3:270m .*not for smollm2:135m"):
        engine.add_lora("named", named)
    assert engine.list_loras() == []
