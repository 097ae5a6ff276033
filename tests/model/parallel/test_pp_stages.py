"""Pipeline stages without processes: the balanced layer split, the bad sizes, and a tiny
Gemma-3-like model (sliding and global layers, untied LM head) run stage after stage in one
process, handing hidden states on, gives build_model's logits; each stage loads only its
own tensors. Over real processes: tests/engine/test_pipeline_parallel.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

from hearth.errors import InvalidParameterError
from hearth.model.batch import AttentionMetadata
from hearth.model.build import build_model
from hearth.model.kv_cache import allocate_kv_caches
from hearth.model.layers.ops import Ops
from hearth.model.parallel.stage import build_stage
from hearth.model.parallel.stages import StagePlan, check_stages, stage_layers
from hearth.weights.loader import load_weights


def test_layers_split_evenly_and_the_rest_goes_before_the_last_stage() -> None:
    assert stage_layers(30, 2) == [range(0, 15), range(15, 30)]
    assert stage_layers(18, 4) == [range(0, 4), range(4, 9), range(9, 14), range(14, 18)]
    assert stage_layers(5, 2) == [range(0, 3), range(3, 5)]
    assert stage_layers(3, 3) == [range(0, 1), range(1, 2), range(2, 3)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    hf = Gemma3ForCausalLM(
        Gemma3TextConfig(
            vocab_size=301,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=5,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=16,
            sliding_window=4,
            layer_types=["sliding_attention", "sliding_attention", "full_attention",
                         "sliding_attention", "full_attention"],
            tie_word_embeddings=False,
            initializer_range=0.2,
        )
    )  # fmt: skip
    path = tmp_path_factory.mktemp("tiny-gemma3")
    hf.save_pretrained(path)
    return path


@pytest.mark.parametrize("size", [0, 6])
def test_more_stages_than_layers_or_none_is_refused_naming_the_valid_values(
    folder: Path, size: int
) -> None:
    with pytest.raises(InvalidParameterError, match="valid values: 1 to 5"):
        check_stages(load_weights(folder).config, size)


@pytest.mark.parametrize("size", [2, 3])
def test_stages_in_turn_give_the_whole_models_logits(folder: Path, size: int) -> None:
    weights = load_weights(folder)
    whole = build_model(weights.config, weights.tensors, backend=Ops())
    stages = [build_stage(StagePlan(weights.config, r, size), weights.tensors) for r in range(size)]
    held = [{n for n, p in s.named_parameters() if p.device.type != "meta"} for s in stages]
    assert not set.intersection(*held)  # the untied model: no tensor on two stages
    assert "lm_head.weight" in held[-1] and "model.embed_tokens.weight" in held[0]
    caches = [s.allocate_kv_caches(2, 4, torch.float32) for s in stages]
    assert [len(c) for c in caches] == [len(r) for r in stage_layers(5, size)]
    ref_caches = allocate_kv_caches(weights.config, 2, 4, torch.float32)
    ids = torch.randint(0, 301, (7,))

    def step(tokens: torch.Tensor, start: int) -> AttentionMetadata:
        n, end = len(tokens), start + len(tokens)
        return AttentionMetadata(
            [n], torch.tensor([end], dtype=torch.int32), torch.arange(start, end),
            torch.tensor([[0, 1]], dtype=torch.int32), 4,
        )  # fmt: skip

    with torch.inference_mode():
        for start, tokens in ((0, ids[:5]), (5, ids[5:6]), (6, ids[6:7])):
            meta = step(tokens, start)
            pos = torch.arange(start, start + len(tokens))
            hidden = tokens
            for stage, cache in zip(stages, caches, strict=True):
                hidden = stage(hidden, pos, meta, cache)
            got = stages[-1].compute_logits(hidden)
            want = whole.compute_logits(whole(tokens, pos, meta, ref_caches))
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
