"""Test helper: a small stand-in for llama.cpp's `convert_hf_to_gguf.py`, so hearth's GGUF
mapping can be checked against files written the way llama.cpp writes them, for families we
have no real GGUF of.

It follows the converter (llama.cpp `conversion/{base,llama,qwen,gemma,phi,deepseek}.py`):
metadata through `gguf.GGUFWriter`'s own `add_*` methods, tensor names through
`gguf.get_tensor_name_map(arch, n_blocks)`, and the converter's tensor changes — llama's Q/K
row permutation, Gemma's RMSNorm weights stored as 1 + w, MoE experts stacked into one 3-D
tensor per projection, DeepSeek's kv_b_proj split into k_b (transposed) and v_b, the V3
router bias renamed to `exp_probs_b.bias`, tied output left out — and its per-tensor type
policy (1-D tensors, norms and routers stay F32; other weights take the file type, Q8_0
falling back to F16 where a row is not whole blocks). It is test code: hearth never imports it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
import transformers as tf
from gguf import GGMLQuantizationType as QT
from safetensors.torch import load_file, save_file

COMMON: dict[str, Any] = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
_MOE = dict(moe_intermediate_size=32, num_experts_per_tok=2)
# transformers' MLA expands K/V to every head itself, so it needs num_key_value_heads == heads
_MLA = dict(
    num_key_value_heads=4, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=12
)


def family_configs() -> dict[str, Any]:
    """Tiny configs of every family, limited to what a llama.cpp file can carry: no sliding
    window for mistral / qwen2 (llama.cpp's converter does not store one for them), Gemma 2/3
    queries scaled by head_dim (query_pre_attn_scalar is not stored), Gemma 3's 5:1 sliding
    pattern (hard-coded in llama.cpp, so 6 layers to reach a global one)."""
    c = COMMON
    mla_common = {k: v for k, v in c.items() if k != "num_key_value_heads"}
    return {
        "mistral": tf.MistralConfig(**c, sliding_window=None, rope_theta=50000.0),
        "mixtral": tf.MixtralConfig(**c, num_local_experts=4, num_experts_per_tok=2),
        "qwen2": tf.Qwen2Config(**c, rope_theta=20000.0),
        "qwen3": tf.Qwen3Config(**c, head_dim=24),
        "qwen2_moe": tf.Qwen2MoeConfig(
            **c, **_MOE, num_experts=4, shared_expert_intermediate_size=48, norm_topk_prob=False
        ),
        "qwen3_moe": tf.Qwen3MoeConfig(**c, **_MOE, num_experts=4, norm_topk_prob=True),
        "gemma": tf.GemmaConfig(**c, head_dim=16),
        "gemma2": tf.Gemma2Config(
            **c,
            head_dim=16,
            query_pre_attn_scalar=16,
            sliding_window=5,
            attn_logit_softcapping=3.0,
            final_logit_softcapping=2.0,
        ),
        "gemma3": tf.Gemma3TextConfig(
            **{**c, "num_hidden_layers": 6},
            head_dim=16,
            query_pre_attn_scalar=16,
            sliding_window=5,
            rope_local_base_freq=20000.0,
            final_logit_softcapping=4.0,
        ),
        # all layers global: the converter then stores no sliding window
        "gemma3_global": tf.Gemma3TextConfig(
            **c, head_dim=16, query_pre_attn_scalar=16, sliding_window=5, sliding_window_pattern=1
        ),
        "phi3": tf.Phi3Config(
            **c, pad_token_id=0, bos_token_id=1, eos_token_id=2, partial_rotary_factor=0.5
        ),
        "deepseek_v2": tf.DeepseekV2Config(
            **mla_common,
            **_MOE,
            **_MLA,
            q_lora_rank=None,
            n_routed_experts=4,
            n_shared_experts=1,
            first_k_dense_replace=1,
            topk_method="group_limited_greedy",
            n_group=2,
            topk_group=1,
            scoring_func="softmax",  # as DeepSeek-V2's config.json says
        ),
        "deepseek_v3": tf.DeepseekV3Config(
            **mla_common,
            **_MOE,
            **_MLA,
            q_lora_rank=24,
            n_routed_experts=4,
            n_shared_experts=1,
            first_k_dense_replace=1,
            n_group=2,
            topk_group=1,
            routed_scaling_factor=1.5,
            scoring_func="sigmoid",  # as DeepSeek-V3's config.json says
        ),
    }


def randomize(model: torch.nn.Module, unit_norms: bool) -> None:
    """Random weights everywhere (transformers' init leaves norms at 1 / 0 and biases at 0,
    which would hide mapping bugs in them). unit_norms: norms around 1 (not Gemma's 1 + w)."""
    with torch.no_grad():
        for name, p in list(model.named_parameters()) + list(model.named_buffers()):
            if not p.is_floating_point() or "inv_freq" in name or "embed_scale" in name:
                continue
            if "norm" in name:
                p.normal_(1.0 if unit_norms else 0.0, 0.2)
            else:
                p.normal_(0.0, 0.12)


# --- the reference ---------------------------------------------------------------------

_ROUTERS = ("mlp.gate.weight", "block_sparse_moe.gate.weight", "shared_expert_gate.weight")


def _stored_type(hf_name: str, shape: tuple[int, ...], ftype: QT) -> QT:
    """The type the converter gives the GGUF tensor made from this HF tensor."""
    if ftype == QT.F32 or len(shape) < 2 or not hf_name.endswith(".weight"):
        return QT.F32
    if "norm" in hf_name.rsplit(".", 2)[-2] or hf_name.endswith(_ROUTERS):
        return QT.F32
    if ftype == QT.Q8_0 and shape[-1] % gguf.GGML_QUANT_SIZES[QT.Q8_0][0]:
        return QT.F16  # the converter's QuantError fallback
    return ftype


def _round_trip(array: np.ndarray, qtype: QT) -> np.ndarray:
    if qtype == QT.F32:
        return array
    return gguf.quants.dequantize(gguf.quants.quantize(array, qtype), qtype).astype(np.float32)


def make_reference(
    config: Any, folder: Path, ftype: QT = QT.F32, seed: int = 0
) -> tuple[Any, dict[str, Any], dict[str, torch.Tensor]]:
    """A random transformers model of `config` saved in `folder` (config.json + safetensors,
    what llama.cpp's converter reads). With a quantized `ftype`, the saved weights are first
    rounded the way the file will store them and the model reloaded from them, so that the
    reference is exactly the network the GGUF file holds.
    Returns (model in eager attention, config.json dict, checkpoint tensors)."""
    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    randomize(model, unit_norms=not config.model_type.startswith("gemma"))
    model.save_pretrained(folder)
    checkpoint = load_file(folder / "model.safetensors")
    if ftype != QT.F32:
        checkpoint = {
            name: torch.from_numpy(
                _round_trip(t.float().numpy(), _stored_type(name, tuple(t.shape), ftype))
            )
            for name, t in checkpoint.items()
        }
        save_file(checkpoint, folder / "model.safetensors", metadata={"format": "pt"})
        model = tf.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
        model.eval()
    hparams = json.loads((folder / "config.json").read_text())
    return model, hparams, checkpoint


# --- the converter -----------------------------------------------------------------------

_ARCH = {
    "llama": gguf.MODEL_ARCH.LLAMA,
    "mistral": gguf.MODEL_ARCH.LLAMA,
    "mixtral": gguf.MODEL_ARCH.LLAMA,
    "qwen2": gguf.MODEL_ARCH.QWEN2,
    "qwen3": gguf.MODEL_ARCH.QWEN3,
    "qwen2_moe": gguf.MODEL_ARCH.QWEN2MOE,
    "qwen3_moe": gguf.MODEL_ARCH.QWEN3MOE,
    "gemma": gguf.MODEL_ARCH.GEMMA,
    "gemma2": gguf.MODEL_ARCH.GEMMA2,
    "gemma3_text": gguf.MODEL_ARCH.GEMMA3,
    "phi3": gguf.MODEL_ARCH.PHI3,
    "deepseek_v2": gguf.MODEL_ARCH.DEEPSEEK2,
    "deepseek_v3": gguf.MODEL_ARCH.DEEPSEEK2,
}
_FILE_TYPE = {
    QT.F32: gguf.LlamaFileType.ALL_F32,
    QT.F16: gguf.LlamaFileType.MOSTLY_F16,
    QT.Q8_0: gguf.LlamaFileType.MOSTLY_Q8_0,
}


def _rope(h: dict[str, Any], kind: str = "full_attention") -> dict[str, Any]:
    """transformers 5's rope_parameters of one layer type (flat when all layers share it)."""
    params: dict[str, Any] = h.get("rope_parameters") or {}
    if kind in params:
        return dict(params[kind])
    return params if kind == "full_attention" else {}


def _text_model_params(w: gguf.GGUFWriter, h: dict[str, Any]) -> None:
    """conversion/base.py TextModel.set_gguf_parameters (the keys our configs reach)."""
    w.add_block_count(h["num_hidden_layers"])
    w.add_context_length(h["max_position_embeddings"])
    w.add_embedding_length(h["hidden_size"])
    w.add_feed_forward_length(h["intermediate_size"])
    w.add_head_count(h["num_attention_heads"])
    w.add_head_count_kv(h["num_key_value_heads"])
    w.add_rope_freq_base(_rope(h)["rope_theta"])
    if (swa_theta := _rope(h, "sliding_attention").get("rope_theta")) is not None:
        w.add_rope_freq_base_swa(swa_theta)
    w.add_layer_norm_rms_eps(h["rms_norm_eps"])
    for keys, add in (
        (("num_local_experts", "num_experts", "n_routed_experts"), w.add_expert_count),
        (("num_experts_per_tok",), w.add_expert_used_count),
        (("n_group",), w.add_expert_group_count),
        (("topk_group",), w.add_expert_group_used_count),
    ):
        value = next((h[k] for k in keys if h.get(k) is not None), None)
        if value is not None:
            add(value)
    if (score := h.get("scoring_func")) is not None:
        w.add_expert_gating_func(
            gguf.ExpertGatingFuncType.SIGMOID
            if score == "sigmoid"
            else gguf.ExpertGatingFuncType.SOFTMAX
        )
    if h.get("head_dim") is not None:
        w.add_key_length(h["head_dim"])
        w.add_value_length(h["head_dim"])


def _gemma_params(w: gguf.GGUFWriter, h: dict[str, Any]) -> None:
    """conversion/gemma.py GemmaModel / Gemma2Model.set_gguf_parameters (no rope base)."""
    w.add_context_length(h["max_position_embeddings"])
    w.add_embedding_length(h["hidden_size"])
    w.add_block_count(h["num_hidden_layers"])
    w.add_feed_forward_length(h["intermediate_size"])
    w.add_head_count(h["num_attention_heads"])
    w.add_head_count_kv(h["num_key_value_heads"])
    w.add_layer_norm_rms_eps(h["rms_norm_eps"])
    w.add_key_length(h["head_dim"])
    w.add_value_length(h["head_dim"])
    if h["model_type"] == "gemma2":
        w.add_attn_logit_softcapping(h["attn_logit_softcapping"])
        w.add_final_logit_softcapping(h["final_logit_softcapping"])
        w.add_sliding_window(h["sliding_window"])


def _family_params(w: gguf.GGUFWriter, h: dict[str, Any]) -> None:
    mt = h["model_type"]
    if mt in ("gemma", "gemma2"):
        _gemma_params(w, h)
        return
    if mt == "phi3":  # conversion/phi.py Phi3MiniModel: its own keys only
        rope = _rope(h)
        rot = rope.get("partial_rotary_factor", h.get("partial_rotary_factor", 1.0))
        w.add_context_length(h["max_position_embeddings"])
        w.add_rope_scaling_orig_ctx_len(h["original_max_position_embeddings"])
        w.add_embedding_length(h["hidden_size"])
        w.add_feed_forward_length(h["intermediate_size"])
        w.add_block_count(h["num_hidden_layers"])
        w.add_head_count(h["num_attention_heads"])
        w.add_head_count_kv(h["num_key_value_heads"])
        w.add_layer_norm_rms_eps(h["rms_norm_eps"])
        w.add_rope_dimension_count(int(rot * h["hidden_size"]) // h["num_attention_heads"])
        w.add_rope_freq_base(rope["rope_theta"])
        w.add_sliding_window(h.get("sliding_window") or 0)
        return
    if mt.startswith("deepseek"):
        # MLA is stored as MQA over the latent (one "kv head" of kv_lora_rank + rope dims)
        _text_model_params(w, {**h, "num_key_value_heads": 1})
        w.add_leading_dense_block_count(h["first_k_dense_replace"])
        w.add_vocab_size(h["vocab_size"])
        if h.get("q_lora_rank") is not None:
            w.add_q_lora_rank(h["q_lora_rank"])
        w.add_kv_lora_rank(h["kv_lora_rank"])
        w.add_key_length(h["kv_lora_rank"] + h["qk_rope_head_dim"])
        w.add_value_length(h["kv_lora_rank"])
        w.add_key_length_mla(h["qk_nope_head_dim"] + h["qk_rope_head_dim"])
        w.add_value_length_mla(h["v_head_dim"])
        w.add_expert_feed_forward_length(h["moe_intermediate_size"])
        w.add_expert_shared_count(h.get("n_shared_experts", 0))
        if h.get("routed_scaling_factor") is not None:
            w.add_expert_weights_scale(h["routed_scaling_factor"])
        if h.get("norm_topk_prob"):
            w.add_expert_weights_norm(True)
        w.add_rope_dimension_count(h["qk_rope_head_dim"])
        return
    _text_model_params(w, h)
    if mt in ("llama", "mistral", "mixtral"):  # conversion/llama.py LlamaModel
        w.add_vocab_size(h["vocab_size"])
        w.add_rope_dimension_count(
            h.get("head_dim") or h["hidden_size"] // h["num_attention_heads"]
        )
    elif mt in ("qwen2_moe", "qwen3_moe"):  # conversion/qwen.py Qwen2MoeModel
        w.add_expert_feed_forward_length(h["moe_intermediate_size"])
        if h.get("shared_expert_intermediate_size") is not None:
            w.add_expert_shared_feed_forward_length(h["shared_expert_intermediate_size"])
    elif mt == "gemma3_text":  # conversion/gemma.py Gemma3Model, after TextModel's keys
        w.add_key_length(h["head_dim"])
        w.add_value_length(h["head_dim"])
        if h.get("final_logit_softcapping"):
            w.add_final_logit_softcapping(h["final_logit_softcapping"])
        if h.get("sliding_window_pattern") != 1:
            w.add_sliding_window(h["sliding_window"])


def _llama_permute(t: torch.Tensor, heads: int) -> torch.Tensor:
    # conversion/llama.py LlamaModel.permute: HF's halves → llama.cpp's interleaved pairs
    return (
        t.reshape(heads, 2, t.shape[0] // heads // 2, *t.shape[1:]).swapaxes(1, 2).reshape(t.shape)
    )


_EXPERT = re.compile(r"model\.layers\.(\d+)\.(mlp|block_sparse_moe)\.experts\.(\d+)\.(\w+)\.weight")


def _converted(h: dict[str, Any], ckpt: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    """(HF-style name the tensor map knows, tensor) after the converter's modify_tensors."""
    mt = h["model_type"]
    out: list[tuple[str, torch.Tensor]] = []
    experts: dict[tuple[str, str, str], dict[int, torch.Tensor]] = {}
    for name, t in ckpt.items():
        t = t.float()
        if mt.startswith("gemma"):
            if name == "lm_head.weight":
                continue  # Gemma's converters skip it: the output is always tied
            if name.endswith("norm.weight"):
                t = t + 1  # llama.cpp's RMSNorm multiplies by w; HF Gemma's by (1 + w)
        if mt in ("llama", "mistral", "mixtral"):
            if name.endswith(("q_proj.weight", "q_proj.bias")):
                t = _llama_permute(t, h["num_attention_heads"])
            elif name.endswith(("k_proj.weight", "k_proj.bias")):
                t = _llama_permute(t, h["num_key_value_heads"])
        if h.get("tie_word_embeddings") and name == "lm_head.weight":
            continue
        if m := _EXPERT.fullmatch(name):
            layer, block, e, proj = m.groups()
            experts.setdefault((layer, block, proj), {})[int(e)] = t
            continue
        if mt.startswith("deepseek") and name.endswith("kv_b_proj.weight"):
            heads, v_dim, nope = h["num_key_value_heads"], h["v_head_dim"], h["qk_nope_head_dim"]
            kv_b = t.view(heads, nope + v_dim, t.shape[-1])
            k_b, v_b = torch.split(kv_b, [nope, v_dim], dim=1)
            out.append((name.replace("kv_b_proj", "k_b_proj"), k_b.transpose(1, 2)))
            out.append((name.replace("kv_b_proj", "v_b_proj"), v_b))
            continue
        if name.endswith("e_score_correction_bias"):  # base.py filter_tensors
            name = name.replace("e_score_correction_bias", "e_score_correction.bias")
        out.append((name, t))
    for (layer, block, proj), per_expert in experts.items():
        stacked = torch.stack([per_expert[e] for e in sorted(per_expert)])  # (experts, out, in)
        if block == "block_sparse_moe":  # Mixtral: llama.cpp's merged name
            out.append((f"layers.{layer}.feed_forward.experts.{proj}.weight", stacked))
        else:
            out.append((f"model.layers.{layer}.mlp.experts.{proj}.weight", stacked))
    return out


def _gguf_type(gguf_name: str, shape: tuple[int, ...], ftype: QT) -> QT:
    """conversion/base.py prepare_tensors' type policy for the tensors our models have."""
    if ftype == QT.F32 or len(shape) <= 1 or gguf_name.endswith("_norm.weight"):
        return QT.F32
    if not gguf_name.endswith(".weight") or re.search(r"\.ffn_gate_inp(_shexp)?\.", gguf_name):
        return QT.F32
    if ftype == QT.Q8_0 and shape[-1] % gguf.GGML_QUANT_SIZES[QT.Q8_0][0]:
        return QT.F16
    return ftype


def _fuse_qkv(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """conversion/base.py's Q/K/V fusion: rows [q; k; v] as `blk.N.attn_qkv`, per layer and
    per suffix where all three exist (after the llama permutation)."""
    out: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        m = re.fullmatch(r"blk\.(\d+)\.attn_([qkv])\.(weight|bias)", name)
        if m is None:
            out[name] = t
            continue
        layer, part, kind = m.groups()
        parts = [tensors.get(f"blk.{layer}.attn_{p}.{kind}") for p in "qkv"]
        if any(p is None for p in parts):
            out[name] = t
        elif part == "q":
            qkv = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ATTN_QKV].format(bid=layer)
            out[f"{qkv}.{kind}"] = torch.cat([p for p in parts if p is not None], dim=0)
    return out


def write_gguf(
    path: Path,
    hparams: dict[str, Any],
    checkpoint: dict[str, torch.Tensor],
    ftype: QT = QT.F32,
    edit: Callable[[gguf.GGUFWriter], None] | None = None,
    fuse_qkv: bool = False,
) -> dict[str, QT]:
    """Write `checkpoint` (HF names, as saved) of a model with config.json `hparams` as a GGUF
    file of type `ftype` (F32, F16 or Q8_0); `edit` may add metadata the converter would not
    (keys llama.cpp reads but this converter does not write); `fuse_qkv` is the converter's
    `--fuse-qkv`. Returns each GGUF tensor's stored type."""
    arch = _ARCH[hparams["model_type"]]
    w = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[arch])
    names = gguf.get_tensor_name_map(arch, hparams["num_hidden_layers"])
    types: dict[str, QT] = {}
    tensors: dict[str, torch.Tensor] = {}
    for hf_name, t in _converted(hparams, checkpoint):
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"gguf's tensor map has no name for {hf_name!r} ({arch.name})")
        tensors[name] = t
    if fuse_qkv:
        tensors = _fuse_qkv(tensors)
    for name, t in tensors.items():
        data = t.contiguous().numpy().astype(np.float32)
        qtype = types[name] = _gguf_type(name, data.shape, ftype)
        if qtype == QT.F32:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    _family_params(w, hparams)
    if edit is not None:
        edit(w)
    w.add_file_type(_FILE_TYPE[ftype])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return types
