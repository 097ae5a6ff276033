"""load_gguf: the real files' tensors equal transformers' state_dict after renaming; MoE
files split their experts under the names the decoder loads; bad files fail by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import torch
from gguf import GGUFValueType

from hearth.errors import CorruptModelError, UnsupportedModelError
from hearth.model.build import build_model
from hearth.weights.gguf import GGUFQuantizedTensor, load_gguf


def _assert_matches_transformers(path: Path, hf_model: Any) -> None:
    loaded = load_gguf(path)
    ref = hf_model.state_dict()
    tied = loaded.config.tie_word_embeddings
    assert set(loaded.tensors) == set(ref) - ({"lm_head.weight"} if tied else set())
    for name, theirs in ref.items():
        if tied and name == "lm_head.weight":
            continue
        ours = loaded.tensors[name]
        assert isinstance(ours, torch.Tensor) and ours.dtype == torch.float32, name
        assert ours.shape == theirs.shape, name
        assert torch.equal(ours, theirs), f"{name}: max diff {(ours - theirs).abs().max()}"
    hf = hf_model.config
    cfg = loaded.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size) == (
        hf.vocab_size,
        hf.hidden_size,
        hf.intermediate_size,
    )
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (
        hf.num_hidden_layers,
        hf.num_attention_heads,
        hf.num_key_value_heads,
    )
    assert cfg.head_dim == getattr(hf, "head_dim", hf.hidden_size // hf.num_attention_heads)
    assert cfg.rms_norm_eps == pytest.approx(hf.rms_norm_eps)
    assert cfg.tie_word_embeddings == hf.tie_word_embeddings
    assert cfg.max_position_embeddings == hf.max_position_embeddings


def test_smollm2_equals_transformers(smollm2_gguf: Path, hf_smollm2_model: Any) -> None:
    _assert_matches_transformers(smollm2_gguf, hf_smollm2_model)
    cfg = load_gguf(smollm2_gguf).config
    assert cfg.rope.theta == hf_smollm2_model.config.rope_parameters["rope_theta"] == 1e5


def test_gemma3_equals_transformers(gemma3_gguf: Path, hf_gemma3_model: Any) -> None:
    _assert_matches_transformers(gemma3_gguf, hf_gemma3_model)
    cfg, hf = load_gguf(gemma3_gguf).config, hf_gemma3_model.config
    assert cfg.architecture == "gemma3_text" and cfg.norm_unit_offset and cfg.qk_norm
    assert cfg.sliding_window == hf.sliding_window == 512
    assert list(cfg.layer_types) == list(hf.layer_types)
    assert cfg.attention_scale == pytest.approx(hf.query_pre_attn_scalar**-0.5)
    assert cfg.rope.theta == hf.rope_parameters["full_attention"]["rope_theta"]
    assert cfg.rope_local is not None
    assert cfg.rope_local.theta == hf.rope_parameters["sliding_attention"]["rope_theta"]


def test_keep_quantized_keeps_blocks(smollm2_gguf: Path) -> None:
    floats = load_gguf(smollm2_gguf).tensors
    kept = load_gguf(smollm2_gguf, keep_quantized=True).tensors
    q = kept["model.layers.3.self_attn.q_proj.weight"]
    assert isinstance(q, GGUFQuantizedTensor)
    assert q.ggml_type.name == "Q4_1" and q.shape == (576, 576)
    # the Q/K un-permutation moved whole rows of blocks: same values as the float path
    assert torch.equal(q.dequantize(), floats["model.layers.3.self_attn.q_proj.weight"])
    k = kept["model.layers.3.self_attn.k_proj.weight"]
    assert isinstance(k, GGUFQuantizedTensor) and k.shape == (192, 576)
    assert torch.equal(k.dequantize(), floats["model.layers.3.self_attn.k_proj.weight"])
    norm = kept["model.layers.3.input_layernorm.weight"]
    assert isinstance(norm, torch.Tensor) and norm.dtype == torch.float32


def test_bf16_load(smollm2_gguf: Path) -> None:
    t = load_gguf(smollm2_gguf, dtype=torch.bfloat16).tensors
    assert t["model.embed_tokens.weight"].dtype == torch.bfloat16
    assert t["model.norm.weight"].dtype == torch.bfloat16


def test_truncated_file_is_corrupt(tmp_path: Path, smollm2_gguf: Path) -> None:
    bad = tmp_path / "smol-cut.gguf"
    with smollm2_gguf.open("rb") as f:
        bad.write_bytes(f.read(60_000_000))
    with pytest.raises(CorruptModelError, match=r"smol-cut\.gguf is truncated"):
        load_gguf(bad)


# --- small synthetic files -------------------------------------------------------------

H, FF, HEADS, KV, VOCAB, EXPERTS = 64, 32, 4, 2, 40, 4
rng = np.random.default_rng(1)


def _rand(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _write(path: Path, arch: str, meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
    w = gguf.GGUFWriter(str(path), arch=arch)
    for key, value in meta.items():
        if isinstance(value, float):
            w.add_key_value(key, value, GGUFValueType.FLOAT32)
        elif isinstance(value, int):
            w.add_key_value(key, value, GGUFValueType.UINT32)
        else:
            w.add_key_value(key, value, GGUFValueType.STRING)
    for name, array in tensors.items():
        w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _base(arch: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    meta = {
        f"{arch}.embedding_length": H,
        f"{arch}.block_count": 1,
        f"{arch}.feed_forward_length": FF,
        f"{arch}.attention.head_count": HEADS,
        f"{arch}.attention.head_count_kv": KV,
        f"{arch}.attention.layer_norm_rms_epsilon": 1e-6,
        f"{arch}.context_length": 128,
    }
    d = H // HEADS
    tensors = {
        "token_embd.weight": _rand(VOCAB, H),
        "output_norm.weight": _rand(H),
        "output.weight": _rand(VOCAB, H),
        "blk.0.attn_norm.weight": _rand(H),
        "blk.0.ffn_norm.weight": _rand(H),
        "blk.0.attn_q.weight": _rand(HEADS * d, H),
        "blk.0.attn_k.weight": _rand(KV * d, H),
        "blk.0.attn_v.weight": _rand(KV * d, H),
        "blk.0.attn_output.weight": _rand(H, HEADS * d),
    }
    return meta, tensors


def _llamacpp_permute(w: np.ndarray, heads: int) -> np.ndarray:
    # what llama.cpp's converter does to HF's q/k rows (written out independently here)
    return (
        w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


def test_mixtral_as_llama(tmp_path: Path) -> None:
    meta, tensors = _base("llama")
    meta.update({"llama.expert_count": EXPERTS, "llama.expert_used_count": 2})
    hf_q, hf_k = tensors["blk.0.attn_q.weight"], tensors["blk.0.attn_k.weight"]
    tensors["blk.0.attn_q.weight"] = _llamacpp_permute(hf_q, HEADS)
    tensors["blk.0.attn_k.weight"] = _llamacpp_permute(hf_k, KV)
    tensors["blk.0.ffn_gate_inp.weight"] = _rand(EXPERTS, H)
    for part in ("gate", "up"):
        tensors[f"blk.0.ffn_{part}_exps.weight"] = _rand(EXPERTS, FF, H)
    tensors["blk.0.ffn_down_exps.weight"] = _rand(EXPERTS, H, FF)
    path = tmp_path / "mixtral.gguf"
    _write(path, "llama", meta, tensors)

    loaded = load_gguf(path)
    cfg, t = loaded.config, loaded.tensors
    assert cfg.architecture == "mixtral" and cfg.moe is not None
    assert (cfg.moe.num_experts, cfg.moe.num_experts_per_tok) == (EXPERTS, 2)
    assert np.array_equal(t["model.layers.0.self_attn.q_proj.weight"].numpy(), hf_q)
    assert np.array_equal(t["model.layers.0.self_attn.k_proj.weight"].numpy(), hf_k)
    for e, hf_part in ((0, "w1"), (3, "w3")):
        got = t[f"model.layers.0.block_sparse_moe.experts.{e}.{hf_part}.weight"]
        src = "gate" if hf_part == "w1" else "up"
        assert np.array_equal(got.numpy(), tensors[f"blk.0.ffn_{src}_exps.weight"][e])
    assert t.shape("model.layers.0.block_sparse_moe.experts.2.w2.weight") == (H, FF)  # type: ignore[attr-defined]
    build_model(cfg, loaded.tensors)  # the decoder accepts every name and shape


def test_qwen2moe_shared_expert(tmp_path: Path) -> None:
    meta, tensors = _base("qwen2moe")
    meta.update(
        {
            "qwen2moe.expert_count": EXPERTS,
            "qwen2moe.expert_used_count": 2,
            "qwen2moe.expert_feed_forward_length": 16,
            "qwen2moe.expert_shared_feed_forward_length": FF,
        }
    )
    d = H // HEADS
    tensors.update(
        {
            "blk.0.attn_q.bias": _rand(HEADS * d),
            "blk.0.attn_k.bias": _rand(KV * d),
            "blk.0.attn_v.bias": _rand(KV * d),
            "blk.0.ffn_gate_inp.weight": _rand(EXPERTS, H),
            "blk.0.ffn_gate_exps.weight": _rand(EXPERTS, 16, H),
            "blk.0.ffn_up_exps.weight": _rand(EXPERTS, 16, H),
            "blk.0.ffn_down_exps.weight": _rand(EXPERTS, H, 16),
            "blk.0.ffn_gate_shexp.weight": _rand(FF, H),
            "blk.0.ffn_up_shexp.weight": _rand(FF, H),
            "blk.0.ffn_down_shexp.weight": _rand(H, FF),
            "blk.0.ffn_gate_inp_shexp.weight": _rand(H),
        }
    )
    path = tmp_path / "qwen2moe.gguf"
    _write(path, "qwen2moe", meta, tensors)
    loaded = load_gguf(path)
    cfg, t = loaded.config, loaded.tensors
    assert cfg.architecture == "qwen2_moe" and cfg.qkv_bias and cfg.moe is not None
    assert cfg.moe.shared_intermediate_size == FF and cfg.moe.intermediate_size == 16
    gate = t["model.layers.0.mlp.shared_expert_gate.weight"]
    assert gate.shape == (1, H)
    assert np.array_equal(
        t["model.layers.0.mlp.experts.1.down_proj.weight"].numpy(),
        tensors["blk.0.ffn_down_exps.weight"][1],
    )
    # qwen2 files are not permuted: q is taken as stored
    assert np.array_equal(
        t["model.layers.0.self_attn.q_proj.weight"].numpy(), tensors["blk.0.attn_q.weight"]
    )
    build_model(cfg, loaded.tensors)


def test_unsupported_architecture_is_named(tmp_path: Path) -> None:
    meta, tensors = _base("mamba")
    path = tmp_path / "mamba.gguf"
    _write(path, "mamba", meta, tensors)
    with pytest.raises(UnsupportedModelError, match=r"'mamba' is not supported.*gemma3.*llama"):
        load_gguf(path)


def test_unknown_tensor_is_named(tmp_path: Path) -> None:
    meta, tensors = _base("llama")
    tensors["blk.0.attn_mystery.weight"] = _rand(H)
    path = tmp_path / "odd.gguf"
    _write(path, "llama", meta, tensors)
    with pytest.raises(UnsupportedModelError, match=r"blk\.0\.attn_mystery\.weight"):
        load_gguf(path)


def test_unknown_rope_scaling_is_named(tmp_path: Path) -> None:
    meta, tensors = _base("llama")
    meta["llama.rope.scaling.type"] = "wavy"
    path = tmp_path / "rope.gguf"
    _write(path, "llama", meta, tensors)
    with pytest.raises(UnsupportedModelError, match=r"llama\.rope\.scaling\.type is 'wavy'"):
        load_gguf(path)


def test_load_weights_recognises_gguf_without_suffix(smollm2_gguf: Path, tmp_path: Path) -> None:
    """Store blobs are named by digest: the loader must know a GGUF by its magic bytes."""
    from hearth.weights.loader import load_weights

    blob = tmp_path / "sha256-0123abcd"
    blob.symlink_to(smollm2_gguf)
    loaded = load_weights(blob)
    assert loaded.config.num_hidden_layers == 30
