"""hearth's GGUF mapping for every family, proven on files written the way llama.cpp writes
them (gguf_family_writer: the `gguf` package's own names and keys plus the converter's tensor
changes) from tiny random transformers models: the GGUF loaded by hearth gives the
transformers model's logits (fp32, 1e-4) on sequences of several lengths in one flat batch.
F16 and Q8_0 files are compared with a reference whose weights were rounded the same way, so
the same tolerance holds and the de-quantisation of every tensor is checked too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as tf
from gguf import GGMLQuantizationType as QT
from gguf_family_writer import COMMON, family_configs, make_reference, write_gguf
from sequence_runner import SequenceRunner

from hearth.model.build import build_model
from hearth.weights.gguf import GGUFQuantizedTensor, load_gguf
from hearth.weights.loader import load_weights

TOL = 1e-4
SEQUENCES = [[3], [5, 17, 200, 9, 41, 77, 128], [*range(30, 43), 255, 0, 1, 2, 250, 19]]
# a quantized file per family costs one more tiny model; these cover the layouts that move
# rows around (permuted Q/K, stacked experts, MLA's split kv_b, fused qkv, Gemma norms)
QUANTIZED = [
    ("mixtral", QT.Q8_0),
    ("qwen2_moe", QT.Q8_0),
    ("gemma3", QT.Q8_0),
    ("phi3", QT.F16),
    ("deepseek_v3", QT.F16),
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # tiny matrices: more threads only spin against the other tests on a shared CPU
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _check(
    family: str,
    ftype: QT,
    tmp_path: Path,
    config: Any = None,
    edit: Any = None,
    fuse_qkv: bool = False,
) -> dict[str, QT]:
    config = config or family_configs()[family]
    hf, hparams, checkpoint = make_reference(config, tmp_path / "hf", ftype)
    path = tmp_path / f"{family}-{ftype.name}.gguf"
    types = write_gguf(path, hparams, checkpoint, ftype, edit, fuse_qkv)

    loaded = load_weights(path)
    # a Mistral file is a llama file: nothing in it says "mistral"
    assert loaded.config.architecture == ("llama" if family == "mistral" else config.model_type)
    if getattr(config, "layer_types", None):  # which layers slide is config, not tensors
        n = config.num_hidden_layers
        assert list(loaded.config.layer_types or ["full_attention"] * n) == config.layer_types
    model = build_model(loaded.config, loaded.tensors)
    runner = SequenceRunner(model, len(SEQUENCES), 32, block_size=4)
    ours = runner.step(list(enumerate(SEQUENCES)))
    for ids, logits in zip(SEQUENCES, ours, strict=True):
        with torch.no_grad():
            ref = hf(torch.tensor([ids])).logits[0].float()
        assert ref.abs().max() > 0.5  # the logits are not trivially small
        diff = (logits - ref).abs().max().item()
        assert diff <= TOL, f"{family} {ftype.name}, {len(ids)} tokens: max |Δlogit| {diff}"
    return types


@pytest.mark.parametrize("family", list(family_configs()))
def test_family_gguf_matches_transformers(family: str, tmp_path: Path) -> None:
    _check(family, QT.F32, tmp_path)


@pytest.mark.parametrize(
    ("family", "ftype"), QUANTIZED, ids=[f"{f}-{q.name}" for f, q in QUANTIZED]
)
def test_quantized_family_gguf_matches_transformers(family: str, ftype: QT, tmp_path: Path) -> None:
    types = _check(family, ftype, tmp_path)
    assert ftype in types.values()  # the file really holds quantized weights


# llama.cpp's `--fuse-qkv` files: one attn_qkv per layer where HF keeps q, k, v apart
FUSED = [("mistral", QT.F32), ("mistral", QT.Q8_0), ("qwen2", QT.F32), ("gemma3", QT.F32)]


@pytest.mark.parametrize(("family", "ftype"), FUSED, ids=[f"{f}-{q.name}" for f, q in FUSED])
def test_fused_qkv_gguf_matches_transformers(family: str, ftype: QT, tmp_path: Path) -> None:
    types = _check(family, ftype, tmp_path, fuse_qkv=True)
    assert "blk.0.attn_qkv.weight" in types and "blk.0.attn_q.weight" not in types
    assert ("blk.0.attn_qkv.bias" in types) == (family == "qwen2")  # Qwen2's q/k/v biases
    if ftype != QT.F32:  # kept quantized, the q/k/v rows are cut and un-permuted as blocks
        path = tmp_path / f"{family}-{ftype.name}.gguf"
        floats, kept = load_gguf(path).tensors, load_gguf(path, keep_quantized=True).tensors
        for proj in ("q_proj", "k_proj", "v_proj"):
            name = f"model.layers.1.self_attn.{proj}.weight"
            q = kept[name]
            assert isinstance(q, GGUFQuantizedTensor) and q.shape == floats[name].shape
            assert torch.equal(q.dequantize(), floats[name])


def test_mla_file_reads_back_kv_b(tmp_path: Path) -> None:
    """The split attn_k_b / attn_v_b of a DeepSeek file join back into HF's kv_b_proj."""
    config = family_configs()["deepseek_v2"]
    _, hparams, checkpoint = make_reference(config, tmp_path / "hf")
    path = tmp_path / "dsv2.gguf"
    types = write_gguf(path, hparams, checkpoint)
    assert "blk.1.attn_k_b.weight" in types and "blk.1.attn_kv_b.weight" not in types
    tensors = load_gguf(path).tensors
    name = "model.layers.1.self_attn.kv_b_proj.weight"
    assert torch.equal(tensors[name], checkpoint[name].float())


def test_gemma3_local_rope_base_from_file(tmp_path: Path) -> None:
    """Gemma 3's sliding-layer RoPE base comes from `rope.freq_base_swa` when the file has it."""
    config = family_configs()["gemma3"]
    _, hparams, checkpoint = make_reference(config, tmp_path / "hf")
    path = tmp_path / "g3.gguf"
    write_gguf(path, hparams, checkpoint)
    cfg = load_gguf(path).config
    assert cfg.rope_local is not None
    assert cfg.rope_local.theta == hparams["rope_parameters"]["sliding_attention"]["rope_theta"]
    assert cfg.rope.theta == hparams["rope_parameters"]["full_attention"]["rope_theta"]
    assert list(cfg.layer_types) == hparams["layer_types"]


def test_gemma3_per_layer_sliding_pattern(tmp_path: Path) -> None:
    """A file that lists its sliding layers (`attention.sliding_window_pattern`, one bool per
    layer, which llama.cpp reads before its 5:1 default) is honoured layer by layer."""
    layer_types = ["sliding_attention", "full_attention", "full_attention", "sliding_attention"]
    config = tf.Gemma3TextConfig(
        **{**COMMON, "num_hidden_layers": 4},
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=5,
        layer_types=layer_types,
    )
    pattern = [t == "sliding_attention" for t in layer_types]
    _check("gemma3", QT.F32, tmp_path, config, lambda w: w.add_sliding_window_pattern(pattern))
