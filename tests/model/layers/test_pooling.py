"""Pooling of packed token states: each mode against a per-sequence computation."""

from __future__ import annotations

import pytest
import torch

from hearth.model.layers.pooling import pool, truncate_dimensions
from hearth.weights.encoder_config import PoolingConfig

LENS = [3, 1, 5]


@pytest.fixture
def hidden() -> torch.Tensor:
    return torch.randn(sum(LENS), 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("mode", "one"),
    [
        ("mean", lambda h: h.mean(0)),
        ("cls", lambda h: h[0]),
        ("lasttoken", lambda h: h[-1]),
        ("max", lambda h: h.amax(0)),
        ("mean_sqrt_len", lambda h: h.sum(0) / len(h) ** 0.5),
    ],
)
def test_modes(hidden: torch.Tensor, mode: str, one: object) -> None:
    got = pool(hidden, LENS, PoolingConfig(mode))
    want = torch.stack([one(part) for part in hidden.split(LENS)])  # type: ignore[operator]
    torch.testing.assert_close(got, want)


def test_normalize_and_shorten(hidden: torch.Tensor) -> None:
    got = pool(hidden, LENS, PoolingConfig("mean", normalize=True))
    torch.testing.assert_close(got.norm(dim=1), torch.ones(3))
    short = truncate_dimensions(got, 4, normalize=True)
    assert short.shape == (3, 4)
    torch.testing.assert_close(short.norm(dim=1), torch.ones(3))


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="pooling mode"):
        PoolingConfig("median")
