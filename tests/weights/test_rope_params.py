"""HF rope settings → RopeConfig (hearth.weights.rope_params): both config spellings
(transformers 5's `rope_parameters`, older `rope_scaling` + `rope_theta`), per-layer-type
nesting, the derived defaults, and unsupported keys or types named in the error."""

from __future__ import annotations

import pytest

from hearth.errors import UnsupportedModelError
from hearth.weights.rope_params import rope, rope_params


def test_old_spelling_with_top_level_theta_and_partial_rotary() -> None:
    d = {"rope_theta": 5e5, "partial_rotary_factor": 0.5, "max_position_embeddings": 4096}
    params, field = rope_params(d)
    assert (params, field) == (None, "rope_scaling")
    cfg = rope(d, params, field, rotary_head_dim=64)
    assert (cfg.theta, cfg.rotary_dim, cfg.type, cfg.factor) == (5e5, 32, "default", 1.0)


def test_llama3_scaling_defaults_its_original_length() -> None:
    d = {"max_position_embeddings": 8192, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}
    cfg = rope(d, *rope_params(d), rotary_head_dim=64)
    assert cfg.type == "llama3" and cfg.factor == 8.0
    assert cfg.original_max_position_embeddings == 8192
    assert (cfg.low_freq_factor, cfg.high_freq_factor) == (1.0, 4.0)


def test_yarn_factor_derived_from_lengths_and_su_alias() -> None:
    d = {
        "max_position_embeddings": 32768,
        "original_max_position_embeddings": 4096,
        "rope_scaling": {"type": "yarn"},
    }
    assert rope(d, *rope_params(d), rotary_head_dim=64).factor == 8.0
    factors = [1.0] * 32  # one per rotary frequency (64 / 2)
    su = {
        "max_position_embeddings": 4096,
        "rope_scaling": {"type": "su", "short_factor": factors, "long_factor": factors},
    }
    assert rope(su, *rope_params(su), rotary_head_dim=64).type == "longrope"
    with pytest.raises(UnsupportedModelError, match="must have 32 entries"):
        rope(su, {"type": "su", "short_factor": [1.0]}, "rope_scaling", rotary_head_dim=64)


def test_per_layer_type_nesting() -> None:
    d = {
        "rope_parameters": {
            "full_attention": {"rope_type": "default", "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
        }
    }
    params, field = rope_params(d, "sliding_attention")
    assert field == "rope_parameters.sliding_attention"
    assert rope(d, params, field, rotary_head_dim=32).theta == 1e4
    assert rope_params({"rope_parameters": {"rope_theta": 1.0}}, "full_attention")[1] == (
        "rope_parameters"
    )


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"rope_type": "default", "wobble": 1}, r"rope_scaling\.wobble=1 .*known rope keys"),
        ({"rope_type": "mrope"}, r"rope_scaling\.rope_type='mrope' .*supported rope types"),
        ({"rope_type": "linear"}, r"rope_scaling\.factor=None .*needs a factor"),
    ],
)
def test_unsupported_rope_is_named(params: dict[str, object], match: str) -> None:
    with pytest.raises(UnsupportedModelError, match=match):
        rope({}, params, "rope_scaling", rotary_head_dim=64)
