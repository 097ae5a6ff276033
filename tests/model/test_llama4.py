"""Llama 4 (text, and the multimodal wrapper's text model) in the one decoder: a tiny random
model whose 4 layers cover rope + chunked attention, NoPE + temperature tuning, MoE and dense
MLPs, compared with transformers on sequences shorter and longer than the attention chunk;
prefill-then-decode equals one prefill; config fields hearth cannot honour stay errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as tf
from sequence_runner import SequenceRunner
from tiny_models import COMMON, backend_under_test, hf_logits, make_pair, randomize

from hearth.errors import UnsupportedModelError
from hearth.model.build import build_model
from hearth.weights.families import config_from_hf
from hearth.weights.loader import load_weights

TOL = 1e-4
CHUNK = 8
# layers: 0 rope+chunked+dense, 1 NoPE+MoE, 2 rope+chunked+MoE, 3 NoPE+dense
TEXT: dict[str, Any] = dict(
    COMMON,
    num_hidden_layers=4,
    head_dim=16,
    intermediate_size=32,  # the experts' (and the shared expert's) width
    intermediate_size_mlp=96,  # the dense layers' width
    num_local_experts=4,
    num_experts_per_tok=1,
    moe_layers=[1, 2],
    no_rope_layers=[1, 0, 1, 0],  # HF's list: 1 = the layer uses rope
    attention_chunk_size=CHUNK,
    attn_temperature_tuning=True,
    floor_scale=4,  # temperature grows from position 3 on: matters at these lengths
    attn_scale=0.5,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
)
rng = torch.Generator().manual_seed(7)
SEQUENCES = [torch.randint(0, 256, (n,), generator=rng).tolist() for n in (5, 17, 40)]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    return make_pair(tmp_path_factory.mktemp("llama4"), tf.Llama4TextConfig(**TEXT))


def test_config_maps_every_feature(pair: tuple[Any, Any]) -> None:
    cfg = pair[1].config
    assert cfg.no_rope_layers == (False, True, False, True)
    assert [cfg.chunk_for(i) for i in range(4)] == [CHUNK, None, CHUNK, None]
    assert cfg.moe_layers == (False, True, True, False)
    assert cfg.moe is not None and cfg.moe.scale_expert_input
    assert cfg.moe.shared_intermediate_size == 32 and cfg.intermediate_size == 96
    assert cfg.qk_l2_norm and cfg.attn_temperature_tuning and cfg.rope.interleaved


def test_matches_transformers_across_chunks(pair: tuple[Any, Any]) -> None:
    hf, model = pair
    refs = [hf_logits(hf, ids) for ids in SEQUENCES]
    alone = [SequenceRunner(model, 1, 40, block_size=4).step([(0, ids)])[0] for ids in SEQUENCES]
    batched = SequenceRunner(model, 3, 40, block_size=4).step(list(enumerate(SEQUENCES)))
    for ref, a, b in zip(refs, alone, batched, strict=True):
        assert ref.abs().max() > 0.5
        assert (a - ref).abs().max() <= TOL
        assert (b - ref).abs().max() <= TOL


def test_features_change_the_logits(pair: tuple[Any, Any]) -> None:
    """The reference would not notice a feature hearth ignores if the feature did nothing at
    these sizes: without the chunk rule, the temperature, the q/k norm or the expert-input
    weighting, the long sequence's logits move."""
    _, model = pair
    ids = SEQUENCES[2]
    ref = SequenceRunner(model, 1, 40).step([(0, ids)])[0]
    rope_layer, nope_layer = model.model.layers[0], model.model.layers[1]
    switches = (
        (rope_layer.self_attn, "chunk", None),
        (rope_layer.self_attn, "l2_eps", None),
        (nope_layer.self_attn, "temperature", None),
        (nope_layer.mlp, "scale_input", False),
    )
    for module, field, off in switches:
        kept = getattr(module, field)
        setattr(module, field, off)
        try:
            moved = SequenceRunner(model, 1, 40).step([(0, ids)])[0]
        finally:
            setattr(module, field, kept)
        assert (moved[CHUNK:] - ref[CHUNK:]).abs().max() > 1e-2, field


def test_prefill_then_decode_equals_one_prefill(pair: tuple[Any, Any]) -> None:
    _, model = pair
    a, b = SEQUENCES[2], SEQUENCES[1]
    whole_a = SequenceRunner(model, 1, 40, block_size=4).step([(0, a)])[0]
    whole_b = SequenceRunner(model, 1, 40, block_size=4).step([(0, b)])[0]
    runner = SequenceRunner(model, 2, 40, block_size=4)
    # A prefills 6 tokens (inside the first chunk), then both decode token by token (the
    # batched decode path, B starting later) across several chunk boundaries
    out_a = [runner.step([(0, a[:6])])[0]]
    out_b = []
    for i in range(6, len(a)):
        steps = [(0, a[i : i + 1])] + ([(1, b[i - 10 : i - 9])] if 10 <= i < 10 + len(b) else [])
        logits = runner.step(steps)
        out_a.append(logits[0])
        if len(logits) > 1:
            out_b.append(logits[1])
    assert (torch.cat(out_a) - whole_a).abs().max() <= TOL
    assert (torch.cat(out_b) - whole_b).abs().max() <= TOL


def test_multimodal_wrapper_runs_its_text_model(tmp_path: Path) -> None:
    vision = dict(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        vision_output_dim=32,
        image_size=28,
        patch_size=14,
        projector_input_dim=32,
        projector_output_dim=64,
    )
    config = tf.Llama4Config(
        text_config=dict(TEXT, num_hidden_layers=2, moe_layers=[1], no_rope_layers=[1, 0]),
        vision_config=vision,
    )
    torch.manual_seed(1)
    hf = tf.Llama4ForConditionalGeneration(config).eval()
    randomize(hf, unit_norms=True)
    hf.save_pretrained(tmp_path)
    loaded = load_weights(tmp_path)
    assert loaded.config.architecture == "llama4"
    model = build_model(loaded.config, loaded.tensors, backend=backend_under_test())
    ids = SEQUENCES[1]
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor([ids])).logits[0].float()
    ours = SequenceRunner(model, 1, 40).step([(0, ids)])[0]
    assert ref.abs().max() > 0.5
    assert (ours - ref).abs().max() <= TOL


def _raw() -> dict[str, Any]:
    return tf.Llama4TextConfig(**TEXT).to_dict()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"no_rope_layers": [1, 0, 1]}, "no_rope_layers"),
        ({"moe_layers": [1, 7]}, "moe_layers"),
        ({"attention_chunk_size": None}, "attention_chunk_size"),
        ({"rope_parameters": {"rope_type": "default", "rope_theta": 1e4, "beta_x": 1}}, "beta_x"),
        ({"layer_types": ["chunked_attention"] * 3 + ["ring"]}, "layer_types"),
    ],
)
def test_fields_hearth_cannot_honour_are_errors(change: dict[str, Any], field: str) -> None:
    with pytest.raises(UnsupportedModelError, match=field):
        config_from_hf({**_raw(), **change})


def test_wrapper_without_text_config_is_an_error() -> None:
    with pytest.raises(UnsupportedModelError, match="text_config"):
        config_from_hf({"model_type": "llama4", "vision_config": {}})
