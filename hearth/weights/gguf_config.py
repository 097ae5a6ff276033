"""GGUF metadata → a Hugging Face-style config dict (the keys a `config.json` of that family
would hold), so one function (`families.config_from_hf`) turns either format into ModelConfig.

This is the one place that knows how llama.cpp spells each family's hyperparameters
(`{arch}.attention.head_count`, ...), which ones llama.cpp hard-codes instead of storing
(Gemma 2/3's sliding patterns and query scale, Qwen3-MoE's normalised top-k) and its
defaults for keys a file may lack (Gemma 2's soft-caps, Gemma 3's local RoPE base). It must
not know tensors' contents beyond the few small ones that carry config (RoPE frequency
factors), which the caller reads for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hearth.errors import UnsupportedModelError
from hearth.weights.gguf_metadata import GGUFTensorInfo

__all__ = ["SUPPORTED_ARCHITECTURES", "hf_config_from_gguf"]

# GGUF general.architecture → HF model_type (llama files with experts become mixtral below).
SUPPORTED_ARCHITECTURES: dict[str, str] = {
    "llama": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "qwen2moe": "qwen2_moe",
    "qwen3moe": "qwen3_moe",
    "gemma": "gemma",
    "gemma2": "gemma2",
    "gemma3": "gemma3_text",
    "phi3": "phi3",
    "deepseek2": "deepseek_v2",
    "llama4": "llama4_text",
}

# llama.cpp's gemma3 graph uses this base for sliding layers when the file does not say
# (`{arch}.rope.freq_base_swa`, written by converters since late 2025).
_GEMMA3_LOCAL_ROPE_BASE = 10000.0
_GEMMA3_SLIDING_PERIOD = 6  # unless the file says: every 6th layer is global

ReadFloats = Callable[[str], np.ndarray]


def hf_config_from_gguf(
    metadata: Mapping[str, Any],
    tensors: Mapping[str, GGUFTensorInfo],
    read_floats: ReadFloats,
) -> dict[str, Any]:
    """Build the HF config dict of a GGUF file from its metadata.

    `tensors` is the file's tensor table (presence and shapes decide tied embeddings, biases
    and the vocabulary size); `read_floats(name)` returns a small float tensor's values (used
    for `rope_freqs` / `rope_factors_*`). Raises UnsupportedModelError for an architecture or
    a setting hearth cannot honour, naming it.
    """
    arch = metadata.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(
            f"GGUF architecture {arch!r} is not supported; hearth runs "
            f"{', '.join(sorted(SUPPORTED_ARCHITECTURES))} (mistral and mixtral files use "
            "'llama')"
        )
    g = _Keys(metadata, arch)
    heads = g.int("attention.head_count")
    hidden = g.int("embedding_length")
    layers = g.int("block_count")
    head_dim = g.int("attention.key_length", hidden // heads)
    cfg: dict[str, Any] = {
        "model_type": SUPPORTED_ARCHITECTURES[arch],
        "hidden_size": hidden,
        "intermediate_size": g.int("feed_forward_length", 0),
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": g.int("attention.head_count_kv", heads),
        "head_dim": head_dim,
        "rms_norm_eps": g.float("attention.layer_norm_rms_epsilon", 1e-6),
        "rope_theta": g.float("rope.freq_base", 10000.0),
        "rope_scaling": None,
        "max_position_embeddings": g.int("context_length", 2048),
        "vocab_size": _vocab_size(metadata, tensors, arch),
        "tie_word_embeddings": "output.weight" not in tensors,
        "hidden_act": "silu",
        "bos_token_id": metadata.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": metadata.get("tokenizer.ggml.eos_token_id"),
    }
    cfg["rope_scaling"] = _rope_scaling(g, cfg, tensors, read_floats)
    _FAMILY[arch](g, cfg, tensors)
    return cfg


class _Keys:
    """Typed access to `{arch}.*` keys with the key named in every error."""

    def __init__(self, metadata: Mapping[str, Any], arch: str) -> None:
        self.metadata = metadata
        self.arch = arch

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.arch}.{key}", default)

    def int(self, key: str, default: int | None = None) -> int:
        value = self.get(key, default)
        if isinstance(value, list):  # per-layer arrays: hearth's config is uniform
            if len(set(value)) != 1:
                raise UnsupportedModelError(
                    f"GGUF key {self.arch}.{key} differs per layer ({value[:8]}...); "
                    "hearth needs one value for all layers"
                )
            value = value[0]
        if value is None:
            raise UnsupportedModelError(
                f"GGUF file lacks {self.arch}.{key}; the file is incomplete — re-convert it"
            )
        return int(value)

    def float(self, key: str, default: float) -> float:
        return float(self.get(key, default))


def _vocab_size(
    metadata: Mapping[str, Any], tensors: Mapping[str, GGUFTensorInfo], arch: str
) -> int:
    # The embedding's row count is the truth the network is built with; the vocabulary
    # array can be shorter (padded embeddings) and `{arch}.vocab_size` is often absent.
    if "token_embd.weight" in tensors:
        return tensors["token_embd.weight"].shape[0]
    return int(metadata.get(f"{arch}.vocab_size") or len(metadata["tokenizer.ggml.tokens"]))


def _rope_scaling(
    g: _Keys,
    cfg: dict[str, Any],
    tensors: Mapping[str, GGUFTensorInfo],
    read_floats: ReadFloats,
) -> dict[str, Any] | None:
    kind = g.get("rope.scaling.type", "none")
    factor = g.get("rope.scaling.factor")
    original = g.get("rope.scaling.original_context_length")
    if "rope_factors_long.weight" in tensors:  # Phi-3 long-context: LongRoPE
        return {
            "rope_type": "longrope",
            "long_factor": read_floats("rope_factors_long.weight").tolist(),
            "short_factor": read_floats("rope_factors_short.weight").tolist(),
            "original_max_position_embeddings": int(original or cfg["max_position_embeddings"]),
        }
    if "rope_freqs.weight" in tensors:  # Llama 3.1+: per-frequency factors stored as a tensor
        return _llama3_from_freqs(read_floats("rope_freqs.weight"), cfg)
    if kind in ("none", None) or (kind == "linear" and factor in (None, 1.0)):
        return None
    if kind == "linear":
        return {"rope_type": "linear", "factor": float(factor)}
    if kind == "yarn":
        scaling: dict[str, Any] = {
            "rope_type": "yarn",
            "factor": float(factor),
            "original_max_position_embeddings": int(original),
        }
        # llama.cpp stores DeepSeek's mscale_all_dim as 0.1 * mscale_all_dim
        log_mul = g.get("rope.scaling.yarn_log_multiplier")
        if log_mul:
            scaling["mscale"] = scaling["mscale_all_dim"] = float(log_mul) / 0.1
        return scaling
    raise UnsupportedModelError(
        f"GGUF key {g.arch}.rope.scaling.type is {kind!r}; hearth supports none, linear, yarn "
        "(and llama3 / longrope via rope_freqs / rope_factors tensors)"
    )


def _llama3_from_freqs(freqs: np.ndarray, cfg: dict[str, Any]) -> dict[str, Any]:
    """llama.cpp stores Llama 3.1's RoPE scaling only as the resulting per-frequency divisors.
    Recover HF's `llama3` parameters: the largest divisor is `factor`; the published models
    all use low/high frequency factors 1 and 4 over 8192 original positions, which we check by
    rebuilding the divisors rather than trusting."""
    factor = float(freqs.max())
    scaling = {
        "rope_type": "llama3",
        "factor": factor,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    dim = freqs.shape[0] * 2
    inv = 1.0 / cfg["rope_theta"] ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    wavelen = 2 * math.pi / inv
    low_wl, high_wl = 8192 / 1.0, 8192 / 4.0
    smooth = (8192 / wavelen - 1.0) / (4.0 - 1.0)
    expected = np.where(
        wavelen < high_wl,
        1.0,
        np.where(wavelen > low_wl, factor, 1 / ((1 - smooth) / factor + smooth)),
    )
    if not np.allclose(expected, freqs, rtol=1e-3):
        raise UnsupportedModelError(
            "GGUF tensor rope_freqs.weight holds RoPE factors that are not Llama 3's "
            "(low 1, high 4, 8192 positions); hearth cannot honour this RoPE scaling"
        )
    return scaling


def _has(tensors: Mapping[str, GGUFTensorInfo], suffix: str) -> bool:
    return f"blk.0.{suffix}" in tensors


def _llama(g: _Keys, cfg: dict[str, Any], tensors: Mapping[str, GGUFTensorInfo]) -> None:
    cfg["attention_bias"] = _has(tensors, "attn_q.bias")
    cfg["mlp_bias"] = False
    experts = g.get("expert_count", 0)
    if experts:  # Mixtral is stored as llama with experts
        cfg.update(
            model_type="mixtral",
            num_local_experts=int(experts),
            num_experts_per_tok=g.int("expert_used_count"),
            sliding_window=None,
        )
        del cfg["attention_bias"], cfg["mlp_bias"]


def _qwen2(g: _Keys, cfg: dict[str, Any], tensors: Mapping[str, GGUFTensorInfo]) -> None:
    cfg.update(use_sliding_window=False, sliding_window=None)


def _qwen3(g: _Keys, cfg: dict[str, Any], tensors: Mapping[str, GGUFTensorInfo]) -> None:
    cfg["attention_bias"] = _has(tensors, "attn_q.bias")


def _moe_common(g: _Keys, cfg: dict[str, Any]) -> None:
    cfg.update(
        num_experts=g.int("expert_count"),
        num_experts_per_tok=g.int("expert_used_count"),
        moe_intermediate_size=g.int("expert_feed_forward_length"),
        decoder_sparse_step=1,
        mlp_only_layers=[],
    )
    if not cfg["intermediate_size"]:
        cfg["intermediate_size"] = cfg["moe_intermediate_size"]


def _qwen2moe(g: _Keys, cfg: dict[str, Any], tensors: Mapping[str, GGUFTensorInfo]) -> None:
    _moe_common(g, cfg)
    cfg.update(
        norm_topk_prob=False,
        shared_expert_intermediate_size=g.int("expert_shared_feed_forward_length", 0),
        use_sliding_window=False,
        sliding_window=None,
    )


def _qwen3moe(g: _Keys, cfg: dict[str, Any], tensors: Mapping[str, GGUFTensorInfo]) -> None:
    _moe_common(g, cfg)
    # llama.cpp always renormalises Qwen3-MoE's top-k weights (HF: norm_topk_prob=True)
    cfg.update(norm_topk_prob=True, attention_bias=False)


def _gemma(g: _Keys, cfg: dict[str, Any], tensors: Mapping[str, GGUFTensorInfo]) -> None:
    cfg.update(hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh")
    cfg["attention_bias"] = False


def _query_pre_attn_scalar(cfg: dict[str, Any], big_model_layers: int) -> float:
    # llama.cpp scales queries by 1/sqrt(head_dim), except the 27B models (recognised by
    # their depth), which use hidden/heads — as their HF configs' query_pre_attn_scalar do.
    if cfg["num_hidden_layers"] == big_model_layers:
        return cfg["hidden_size"] / cfg["num_attention_heads"]
    return float(cfg["head_dim"])


def _swa_layer_types(g: _Keys, layers: int, period: int) -> list[str]:
    """llama.cpp's sliding layers: `attention.sliding_window_pattern` as one bool per layer,
    or as a period n (layer i slides unless i % n == n - 1; 0: every layer slides), else the
    architecture's default period."""
    pattern = g.get("attention.sliding_window_pattern", period)
    if isinstance(pattern, list):
        if len(pattern) != layers:
            raise UnsupportedModelError(
                f"GGUF key {g.arch}.attention.sliding_window_pattern has {len(pattern)} "
                f"entries for {layers} layers; the file is inconsistent — re-convert it"
            )
        slides = [bool(p) for p in pattern]
    else:
        n = int(pattern)
        slides = [n == 0 or i % n < n - 1 for i in range(layers)]
    return ["sliding_attention" if s else "full_attention" for s in slides]


def _gemma2(g: _Keys, cfg: dict[str, Any], tensors: Mapping[str, GGUFTensorInfo]) -> None:
    _gemma(g, cfg, tensors)
    cfg.update(
        # llama.cpp's defaults when a file lacks them (Gemma 2's published values)
        attn_logit_softcapping=g.float("attn_logit_softcapping", 50.0) or None,
        final_logit_softcapping=g.float("final_logit_softcapping", 30.0) or None,
        sliding_window=g.int("attention.sliding_window", 4096),
        query_pre_attn_scalar=_query_pre_attn_scalar(cfg, big_model_layers=46),
        # llama.cpp's default: even layers slide, odd layers are global
        layer_types=_swa_layer_types(g, cfg["num_hidden_layers"], period=2),
    )


def _gemma3(g: _Keys, cfg: dict[str, Any], tensors: Mapping[str, GGUFTensorInfo]) -> None:
    _gemma(g, cfg, tensors)
    layers = cfg["num_hidden_layers"]
    window = g.int("attention.sliding_window", 0)
    cfg.update(
        attn_logit_softcapping=None,
        final_logit_softcapping=g.get("final_logit_softcapping") or None,
        query_pre_attn_scalar=_query_pre_attn_scalar(cfg, big_model_layers=62),
        rope_local_base_freq=g.float("rope.freq_base_swa", _GEMMA3_LOCAL_ROPE_BASE),
    )
    if window > 0:
        cfg.update(
            sliding_window=window,
            layer_types=_swa_layer_types(g, layers, period=_GEMMA3_SLIDING_PERIOD),
        )
    else:  # llama.cpp: no sliding window stored (or 0) means every layer is global
        cfg.update(sliding_window=None, layer_types=["full_attention"] * layers)


def _phi3(g: _Keys, cfg: dict[str, Any], tensors: Mapping[str, GGUFTensorInfo]) -> None:
    rotary = g.int("rope.dimension_count", cfg["head_dim"])
    cfg.update(
        partial_rotary_factor=rotary / cfg["head_dim"],
        sliding_window=g.get("attention.sliding_window"),
        original_max_position_embeddings=int(
            g.get("rope.scaling.original_context_length", cfg["max_position_embeddings"])
        ),
        attention_bias=False,
    )


def _deepseek2(g: _Keys, cfg: dict[str, Any], tensors: Mapping[str, GGUFTensorInfo]) -> None:
    rope_dim = g.int("rope.dimension_count")
    if g.get("attention.key_length_mla") is not None:
        # newer llama.cpp files: key_length describes the absorbed (MQA) form
        qk_head_dim = g.int("attention.key_length_mla")
        v_head_dim = g.int("attention.value_length_mla")
        cfg["num_key_value_heads"] = cfg["num_attention_heads"]
    else:
        qk_head_dim = g.int("attention.key_length")
        v_head_dim = g.int("attention.value_length")
    sigmoid = g.get("expert_gating_func", 1) == 2
    n_group = int(g.get("expert_group_count", 1) or 1)
    cfg.update(
        model_type="deepseek_v3" if sigmoid else "deepseek_v2",
        q_lora_rank=g.get("attention.q_lora_rank") or None,
        kv_lora_rank=g.int("attention.kv_lora_rank"),
        qk_rope_head_dim=rope_dim,
        qk_nope_head_dim=qk_head_dim - rope_dim,
        v_head_dim=v_head_dim,
        head_dim=rope_dim,
        n_routed_experts=g.int("expert_count"),
        n_shared_experts=g.int("expert_shared_count", 0),
        num_experts_per_tok=g.int("expert_used_count"),
        moe_intermediate_size=g.int("expert_feed_forward_length"),
        first_k_dense_replace=g.int("leading_dense_block_count", 0),
        routed_scaling_factor=g.float("expert_weights_scale", 1.0),
        norm_topk_prob=bool(g.get("expert_weights_norm", False)),
        scoring_func="sigmoid" if sigmoid else "softmax",
        topk_method="noaux_tc"
        if sigmoid
        else ("group_limited_greedy" if n_group > 1 else "greedy"),
        n_group=n_group,
        topk_group=int(g.get("expert_group_used_count", 1) or 1),
        moe_layer_freq=1,
        rope_interleave=True,
        attention_bias=False,
    )


def _llama4(g: _Keys, cfg: dict[str, Any], tensors: Mapping[str, GGUFTensorInfo]) -> None:
    # llama.cpp hard-codes what Llama 4 files do not store (llama-model.cpp, LLM_ARCH_LLAMA4):
    # every 4th layer NoPE and global, the others chunked by 8192; query temperature with
    # floor 8192 and scale 0.1 on NoPE layers; q/k norm except on the 128-expert model
    if g.get("attention.sliding_window") == 0:  # llama.cpp's MobileLLM variant
        raise UnsupportedModelError(
            "GGUF key llama4.attention.sliding_window=0 (a Llama 4 without chunked attention) "
            "is not supported"
        )
    experts = g.int("expert_count")
    cfg.update(
        intermediate_size_mlp=cfg["intermediate_size"],  # the dense layers' width
        intermediate_size=g.int("expert_feed_forward_length"),
        num_local_experts=experts,
        num_experts_per_tok=g.int("expert_used_count"),
        interleave_moe_layer_step=g.int("interleave_moe_layer_step", 1),
        moe_layers=None,
        no_rope_layers=None,
        no_rope_layer_interval=4,
        attention_chunk_size=8192,
        use_qk_norm=experts != 128,
        attn_temperature_tuning=True,
        floor_scale=8192,
        attn_scale=0.1,
        attention_bias=False,
    )


_FAMILY: dict[str, Callable[[_Keys, dict[str, Any], Mapping[str, GGUFTensorInfo]], None]] = {
    "llama": _llama,
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "qwen2moe": _qwen2moe,
    "qwen3moe": _qwen3moe,
    "gemma": _gemma,
    "gemma2": _gemma2,
    "gemma3": _gemma3,
    "phi3": _phi3,
    "deepseek2": _deepseek2,
    "llama4": _llama4,
}
