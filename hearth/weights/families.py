"""The one place that maps a Hugging Face `config.json` dict (or GGUF metadata already turned
into one by `weights/gguf*.py`) to a `ModelConfig`: which families exist and how each one's
keys become the generic decoder's fields. A field we cannot honour raises
UnsupportedModelError naming it; nothing is silently dropped that changes the numbers.
Knows nothing of tensors or files."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from hearth.errors import UnsupportedModelError
from hearth.weights.config import LAYER_TYPES, MLAConfig, ModelConfig, MoEConfig, RopeConfig
from hearth.weights.rope_params import fail as _fail
from hearth.weights.rope_params import rope as _rope
from hearth.weights.rope_params import rope_params as _rope_params

LLAMA_LIKE = ("llama", "mistral", "qwen2", "qwen3", "phi3")
MOE = ("mixtral", "qwen2_moe", "qwen3_moe")
GEMMA = ("gemma", "gemma2", "gemma3_text", "gemma3")
DEEPSEEK = ("deepseek_v2", "deepseek_v3")
LLAMA4 = ("llama4_text", "llama4")  # llama4: the multimodal wrapper; its text_config is run
SUPPORTED_MODEL_TYPES = LLAMA_LIKE + MOE + GEMMA + DEEPSEEK + LLAMA4

_ACTIVATIONS = {
    "silu": "silu",
    "swish": "silu",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
    "gelu": "gelu",
}
_TIED_BY_DEFAULT = set(GEMMA)


def _layer_types(
    d: Mapping[str, Any], mt: str, n: int, no_rope: tuple[bool, ...]
) -> tuple[str, ...]:
    if d.get("layer_types"):
        types = tuple(d["layer_types"])
        if len(types) != n or any(t not in LAYER_TYPES for t in types):
            raise _fail("layer_types", types, f"expected one of {LAYER_TYPES} per layer")
        return types
    if mt == "llama4_text":  # rope layers attend within their chunk, NoPE layers globally
        return tuple("full_attention" if nope else "chunked_attention" for nope in no_rope)
    if mt == "gemma2":
        return tuple("sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n))
    if mt in ("gemma3_text", "gemma3"):
        pattern = int(d.get("sliding_window_pattern", d.get("_sliding_window_pattern", 6)))
        return tuple(
            "sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n)
        )
    if mt in ("qwen2", "qwen3", "qwen2_moe", "qwen3_moe"):
        start = int(d.get("max_window_layers", n))
        on = bool(d.get("use_sliding_window")) and bool(d.get("sliding_window"))
        return tuple(
            "sliding_attention" if on and i >= start else "full_attention" for i in range(n)
        )
    if mt in ("mistral", "mixtral", "phi3") and d.get("sliding_window"):
        return ("sliding_attention",) * n
    return ("full_attention",) * n


def _moe(d: Mapping[str, Any], mt: str, n: int) -> tuple[MoEConfig | None, tuple[bool, ...]]:
    if mt == "llama4_text":
        moe = MoEConfig(
            num_experts=int(d.get("num_local_experts", 16)),
            num_experts_per_tok=int(d.get("num_experts_per_tok", 1)),
            intermediate_size=int(d["intermediate_size"]),
            router_scores="sigmoid",
            shared_intermediate_size=int(d["intermediate_size"]),
            scale_expert_input=True,
        )
        layers = d.get("moe_layers")
        if layers is None:  # every step-th layer, ending each step (HF's default)
            step = int(d.get("interleave_moe_layer_step", 1))
            if step <= 0:
                raise _fail("interleave_moe_layer_step", step, "must be > 0")
            layers = range(step - 1, n, step)
        if any(not 0 <= int(i) < n for i in layers):
            raise _fail("moe_layers", list(layers), f"layer indices must be in 0..{n - 1}")
        chosen = {int(i) for i in layers}
        return moe, tuple(i in chosen for i in range(n))
    if mt == "mixtral":
        moe = MoEConfig(
            num_experts=int(d["num_local_experts"]),
            num_experts_per_tok=int(d["num_experts_per_tok"]),
            intermediate_size=int(d["intermediate_size"]),
            norm_topk_prob=True,
        )
        return moe, (True,) * n
    if mt in ("qwen2_moe", "qwen3_moe"):
        shared = int(d.get("shared_expert_intermediate_size") or 0) if mt == "qwen2_moe" else 0
        moe = MoEConfig(
            num_experts=int(d.get("num_experts") or d["num_local_experts"]),
            num_experts_per_tok=int(d["num_experts_per_tok"]),
            intermediate_size=int(d["moe_intermediate_size"]),
            norm_topk_prob=bool(d.get("norm_topk_prob", False)),
            shared_intermediate_size=shared,
            shared_expert_gate=shared > 0,
        )
        step = int(d.get("decoder_sparse_step", 1))
        dense = set(d.get("mlp_only_layers") or ())
        return moe, tuple(i not in dense and (i + 1) % step == 0 for i in range(n))
    if mt in DEEPSEEK:
        if int(d.get("moe_layer_freq", 1)) != 1:
            raise _fail("moe_layer_freq", d["moe_layer_freq"], "only 1 is supported")
        v3 = mt == "deepseek_v3"
        method = d.get("topk_method", "noaux_tc" if v3 else "greedy")
        known = ("noaux_tc",) if v3 else ("greedy", "group_limited_greedy")
        if method not in known:
            raise _fail("topk_method", method, f"{mt} supports {known}")
        scoring = d.get("scoring_func", "sigmoid" if v3 else "softmax")
        if scoring != ("sigmoid" if v3 else "softmax"):
            raise _fail("scoring_func", scoring, f"{mt} uses {'sigmoid' if v3 else 'softmax'}")
        grouped = method in ("noaux_tc", "group_limited_greedy")
        num_experts = int(d.get("n_routed_experts") or d["num_local_experts"])
        moe = MoEConfig(
            num_experts=num_experts,
            num_experts_per_tok=int(d["num_experts_per_tok"]),
            intermediate_size=int(d["moe_intermediate_size"]),
            norm_topk_prob=bool(d.get("norm_topk_prob", False)),
            router_scores=scoring,
            routed_scaling_factor=float(d.get("routed_scaling_factor", 1.0)),
            num_groups=int(d.get("n_group") or 1) if grouped else 1,
            topk_groups=int(d.get("topk_group") or 1) if grouped else 1,
            group_score="top2_sum" if v3 else "max",
            score_correction_bias=v3,
            shared_intermediate_size=int(d["moe_intermediate_size"])
            * int(d.get("n_shared_experts") or 0),
        )
        first_dense = int(d.get("first_k_dense_replace", 0))
        return moe, tuple(i >= first_dense for i in range(n))
    return None, ()


def _no_rope_layers(d: Mapping[str, Any], mt: str, n: int) -> tuple[bool, ...]:
    """Which layers skip rope. HF's Llama 4 `no_rope_layers` is inverted: 1 = uses rope."""
    if mt != "llama4_text":
        return ()
    interval = int(d.get("no_rope_layer_interval", 4))
    uses_rope = d.get("no_rope_layers") or [int((i + 1) % interval != 0) for i in range(n)]
    if len(uses_rope) != n or any(v not in (0, 1) for v in uses_rope):
        raise _fail("no_rope_layers", uses_rope, f"expected {n} entries of 1 (rope) or 0 (NoPE)")
    return tuple(not v for v in uses_rope)


def _llama4_attention(d: Mapping[str, Any], mt: str) -> dict[str, Any]:
    """Llama 4's attention features: chunked attention on rope layers, the weightless q/k
    norm after rope, query temperature tuning on NoPE layers (HF defaults when absent)."""
    if mt != "llama4_text":
        return {}
    chunk = d.get("attention_chunk_size", 8192)
    return dict(
        attention_chunk_size=int(chunk) if chunk is not None else None,
        qk_l2_norm=bool(d.get("use_qk_norm", True)),
        attn_temperature_tuning=bool(d.get("attn_temperature_tuning", True)),
        attn_temperature_floor_scale=float(d.get("floor_scale", 8192)),
        attn_temperature_scale=float(d.get("attn_scale", 0.1)),
    )


def _eos(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    return tuple(int(v) for v in value) if isinstance(value, list | tuple) else (int(value),)


def config_from_hf(d: Mapping[str, Any]) -> ModelConfig:
    """Map an HF config.json dict to a ModelConfig, or raise UnsupportedModelError naming the
    model_type (with the supported list) or the field we cannot honour."""
    mt = d.get("model_type")
    if mt not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"model_type {mt!r} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    if mt == "gemma3" and "text_config" in d:
        raise _fail(
            "text_config", "...", "multimodal Gemma 3 folders are not supported; use the text model"
        )
    if mt == "llama4":  # the multimodal wrapper: run its text model, ignore the vision tower
        text = d.get("text_config")
        if not isinstance(text, Mapping) or text.get("model_type", "llama4_text") != "llama4_text":
            raise _fail("text_config", text, "a llama4 config.json needs a llama4_text text_config")
        return dataclasses.replace(
            config_from_hf({**text, "model_type": "llama4_text"}), architecture="llama4"
        )
    if d.get("use_bidirectional_attention"):
        raise _fail("use_bidirectional_attention", True, "hearth runs causal decoders only")
    try:
        return _build(d, str(mt))
    except KeyError as exc:
        raise UnsupportedModelError(
            f"config.json of a {mt} model lacks the field {exc.args[0]!r}"
        ) from exc
    except ValueError as exc:
        raise UnsupportedModelError(f"config.json of a {mt} model is invalid: {exc}") from exc


def _activation(d: Mapping[str, Any], mt: str) -> str:
    """The HF activation name (a key of _ACTIVATIONS)."""
    gemma = mt in GEMMA
    act_name = (
        d.get("hidden_activation")
        or d.get("hidden_act")
        or ("gelu_pytorch_tanh" if gemma else "silu")
    )
    if gemma and act_name == "gelu":  # legacy Gemma value that means the tanh approximation
        act_name = "gelu_pytorch_tanh"
    if act_name not in _ACTIVATIONS:
        raise _fail("hidden_act", act_name, f"supported: {sorted(_ACTIVATIONS)}")
    return str(act_name)


def _attention(
    d: Mapping[str, Any], mt: str, head_dim: int, bias: bool
) -> tuple[MLAConfig | None, RopeConfig, RopeConfig | None, float | None]:
    """(MLA config, rope, rope of the sliding layers, attention scale) of the family."""
    mla = None
    attention_scale = None
    params, field = _rope_params(d, "full_attention")
    if mt in DEEPSEEK:
        if bias:
            raise _fail("attention_bias", True, "DeepSeek attention has no biases")
        mla = MLAConfig(
            q_lora_rank=d.get("q_lora_rank"),
            kv_lora_rank=int(d["kv_lora_rank"]),
            qk_nope_head_dim=int(d["qk_nope_head_dim"]),
            qk_rope_head_dim=int(d["qk_rope_head_dim"]),
            v_head_dim=int(d["v_head_dim"]),
        )
        interleaved = mt == "deepseek_v2" or bool(d.get("rope_interleave", True))
        rope = _rope(d, params, field, mla.qk_rope_head_dim, interleaved)
        attention_scale = mla.qk_head_dim**-0.5
        if rope.type != "default" and rope.mscale_all_dim:
            # DeepSeek YaRN also sharpens the softmax by mscale(factor, mscale_all_dim)^2
            m = 0.1 * rope.mscale_all_dim * math.log(rope.factor) + 1.0 if rope.factor > 1 else 1.0
            attention_scale *= m * m
    else:
        llama4 = mt == "llama4_text"  # Llama 4 rotates pairs, at theta 500000 by default
        theta = 500000.0 if llama4 else 10000.0
        rope = _rope(d, params, field, head_dim, interleaved=llama4, default_theta=theta)
    rope_local = None
    if mt in ("gemma3_text", "gemma3"):
        nested = d.get("rope_parameters") or {}
        if isinstance(nested.get("sliding_attention"), Mapping):
            field = "rope_parameters.sliding_attention"
            rope_local = _rope(d, nested["sliding_attention"], field, head_dim)
        else:  # older config.json: local layers use plain rope at rope_local_base_freq
            theta = float(d.get("rope_local_base_freq", 10000.0))
            rope_local = RopeConfig(theta=theta, rotary_dim=head_dim)
    if mt in ("gemma2", "gemma3_text", "gemma3"):
        attention_scale = float(d.get("query_pre_attn_scalar", head_dim)) ** -0.5
    return mla, rope, rope_local, attention_scale


def _build(d: Mapping[str, Any], mt: str) -> ModelConfig:
    n = int(d["num_hidden_layers"])
    heads = int(d["num_attention_heads"])
    hidden = int(d["hidden_size"])
    head_dim = int(d.get("head_dim") or hidden // heads)
    gemma = mt in GEMMA
    act_name = _activation(d, mt)
    no_rope = _no_rope_layers(d, mt, n)
    layer_types = _layer_types(d, mt, n, no_rope)
    sliding = "sliding_attention" in layer_types
    moe, moe_layers = _moe(d, mt, n)
    bias = bool(d.get("attention_bias", False))
    mla, rope, rope_local, attention_scale = _attention(d, mt, head_dim, bias)

    qkv_bias = {"qwen2": True, "qwen2_moe": bool(d.get("qkv_bias", True))}.get(mt, bias)
    tie = d.get("tie_word_embeddings", mt in _TIED_BY_DEFAULT)
    return ModelConfig(
        architecture=mt,
        vocab_size=int(d["vocab_size"]),
        hidden_size=hidden,
        # Llama 4's dense layers have their own width (intermediate_size is the experts')
        intermediate_size=int(d.get("intermediate_size_mlp", 16384))
        if mt == "llama4_text"
        else int(d["intermediate_size"]),
        num_hidden_layers=n,
        num_attention_heads=heads,
        num_key_value_heads=int(d.get("num_key_value_heads") or heads),
        head_dim=mla.v_head_dim if mla else head_dim,
        rope=rope,
        max_position_embeddings=int(d.get("max_position_embeddings", 2048)),
        rms_norm_eps=float(d.get("rms_norm_eps", 1e-5 if mt == "llama4_text" else 1e-6)),
        norm_unit_offset=gemma,
        hidden_act=_ACTIVATIONS[act_name],
        tie_word_embeddings=bool(tie),
        qkv_bias=qkv_bias,
        o_bias=bias and mt not in ("qwen2", "qwen2_moe"),
        mlp_bias=bool(d.get("mlp_bias", False)),
        qk_norm=mt in ("qwen3", "qwen3_moe", "gemma3_text", "gemma3"),
        sandwich_norm=mt in ("gemma2", "gemma3_text", "gemma3"),
        embedding_multiplier=hidden**0.5 if gemma else None,
        attention_scale=attention_scale,
        attn_logit_softcapping=d.get("attn_logit_softcapping"),
        final_logit_softcapping=d.get("final_logit_softcapping"),
        sliding_window=int(d["sliding_window"]) if sliding else None,
        layer_types=layer_types,
        no_rope_layers=no_rope,
        **_llama4_attention(d, mt),
        rope_local=rope_local,
        moe=moe,
        moe_layers=moe_layers,
        mla=mla,
        bos_token_id=d.get("bos_token_id"),
        eos_token_ids=_eos(d.get("eos_token_id")),
    )
