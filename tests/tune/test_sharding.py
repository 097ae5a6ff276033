"""--shard's rule: what one copy needs to train, and when auto shards (the FSDP runs
themselves are in test_distributed.py)."""

from __future__ import annotations

import pytest
import torch

from hearth.errors import InvalidParameterError
from hearth.tune import sharding
from hearth.tune.sharding import resolve_shard, training_bytes


def _model() -> torch.nn.Module:
    model = torch.nn.Linear(4, 4)  # 20 float32 values: 80 bytes
    model.bias.requires_grad_(False)  # frozen: its weights only
    return model


def test_training_bytes_counts_gradients_and_adamw_moments_of_trained_weights() -> None:
    assert training_bytes(_model()) == 16 * 4 * 4 + 4 * 4


def test_auto_shards_when_one_copy_outgrows_half_the_ram_per_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the machine's RAM is a fact of the machine: pretend a small one (272 bytes per copy)
    monkeypatch.setattr(sharding, "_ram_bytes", lambda: 1000)
    assert resolve_shard("auto", "lora", _model(), nproc=1) == "none"  # 272 <= 500
    assert resolve_shard("auto", "lora", _model(), nproc=2) == "full"  # 272 > 250
    assert resolve_shard("auto", "qlora", _model(), nproc=8) == "none"
    assert resolve_shard("none", "full", _model(), nproc=8) == "none"
    assert resolve_shard("full", "lora", _model(), nproc=2) == "full"


def test_bad_shard_values_name_the_choices() -> None:
    with pytest.raises(InvalidParameterError, match="one of auto, full, none"):
        resolve_shard("zero3", "lora", _model(), 2)
    with pytest.raises(InvalidParameterError, match="qlora"):
        resolve_shard("full", "qlora", _model(), 2)
