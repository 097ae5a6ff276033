"""HF rope settings -> RopeConfig: `rope_parameters` (transformers 5, possibly nested per
layer type) or `rope_scaling` plus top-level `rope_theta` / `partial_rotary_factor` (older
config.json files). A key or type we cannot honour raises UnsupportedModelError naming it.
Used by families.py; knows nothing of families, tensors or files."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hearth.errors import UnsupportedModelError
from hearth.weights.config import ROPE_TYPES, RopeConfig

# keys a rope dict may carry, by HF name; anything else is a field we do not know how to honour
_ROPE_KEYS = {
    "rope_type", "type", "rope_theta", "factor", "partial_rotary_factor",
    "original_max_position_embeddings", "low_freq_factor", "high_freq_factor", "beta_fast",
    "beta_slow", "mscale", "mscale_all_dim", "attention_factor", "truncate", "short_factor",
    "long_factor",
}  # fmt: skip
_ROPE_ALIASES = {"su": "longrope"}  # Phi-3's early name for longrope


def fail(field: str, value: Any, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"config field {field}={value!r} is not supported: {why}")


def rope(
    d: Mapping[str, Any],
    params: Mapping[str, Any] | None,
    field: str,
    rotary_head_dim: int,
    interleaved: bool = False,
    default_theta: float = 10000.0,
) -> RopeConfig:
    """One RopeConfig from HF's `rope_parameters` (transformers 5) or `rope_scaling` plus
    top-level `rope_theta` / `partial_rotary_factor` (older config.json files)."""
    p = dict(params or {})
    for key in p:
        if key not in _ROPE_KEYS:
            raise fail(f"{field}.{key}", p[key], f"known rope keys are {sorted(_ROPE_KEYS)}")
    rope_type = p.get("rope_type", p.get("type", "default"))
    rope_type = _ROPE_ALIASES.get(rope_type, rope_type)
    if rope_type not in ROPE_TYPES:
        raise fail(f"{field}.rope_type", rope_type, f"supported rope types: {ROPE_TYPES}")
    theta = float(p.get("rope_theta", d.get("rope_theta", default_theta)))
    partial = float(p.get("partial_rotary_factor", d.get("partial_rotary_factor", 1.0)))
    max_pos = int(d.get("max_position_embeddings", 2048))
    original = d.get("original_max_position_embeddings") or p.get(
        "original_max_position_embeddings"
    )
    if rope_type in ("llama3", "yarn", "longrope") and not original:
        original = max_pos
    factor = p.get("factor")
    if factor is None:
        if rope_type in ("linear", "dynamic", "llama3"):
            raise fail(f"{field}.factor", None, f"rope type {rope_type!r} needs a factor")
        factor = max_pos / original if rope_type in ("yarn", "longrope") and original else 1.0
    try:
        return RopeConfig(
            theta=theta,
            rotary_dim=int(rotary_head_dim * partial),
            type=rope_type,
            factor=float(factor),
            interleaved=interleaved,
            max_position_embeddings=max_pos,
            original_max_position_embeddings=int(original) if original else None,
            low_freq_factor=float(p.get("low_freq_factor", 1.0)),
            high_freq_factor=float(p.get("high_freq_factor", 4.0)),
            beta_fast=float(p.get("beta_fast") or 32.0),
            beta_slow=float(p.get("beta_slow") or 1.0),
            mscale=p.get("mscale"),
            mscale_all_dim=p.get("mscale_all_dim"),
            attention_factor=p.get("attention_factor"),
            truncate=bool(p.get("truncate", True)),
            short_factor=tuple(float(x) for x in p.get("short_factor") or ()),
            long_factor=tuple(float(x) for x in p.get("long_factor") or ()),
        )
    except ValueError as exc:
        raise fail(field, dict(p), str(exc)) from exc


def rope_params(d: Mapping[str, Any], layer_type: str | None = None) -> tuple[Any, str]:
    """The rope dict for a layer type, handling transformers 5's per-layer-type nesting."""
    if d.get("rope_parameters") is not None:
        params = d["rope_parameters"]
        if layer_type is not None and isinstance(params.get(layer_type), Mapping):
            return params[layer_type], f"rope_parameters.{layer_type}"
        return params, "rope_parameters"
    return d.get("rope_scaling"), "rope_scaling"
