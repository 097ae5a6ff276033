"""Pooling of packed token states into one vector per sequence, as sentence-transformers'
Pooling and Normalize modules do (mean, CLS, last token, max, mean * sqrt(len)). Works on
the packed (T, H) layout of the encoder and of the decoder; knows nothing of files."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from hearth.weights.encoder_config import PoolingConfig


def pool(hidden: torch.Tensor, lens: Sequence[int], config: PoolingConfig) -> torch.Tensor:
    """hidden: (T, H) states of the sequences packed end to end, `lens` their lengths.
    Returns (S, H) float32, L2-normalised when config.normalize."""
    lens = [int(n) for n in lens]
    hidden = hidden.float()
    mode = config.mode
    if mode == "cls":
        starts = torch.tensor([0, *lens[:-1]], device=hidden.device).cumsum(0)
        out = hidden[starts]
    elif mode == "lasttoken":
        ends = torch.tensor(lens, device=hidden.device).cumsum(0) - 1
        out = hidden[ends]
    elif mode == "max":
        out = torch.stack([part.amax(0) for part in hidden.split(lens)])
    else:
        counts = torch.tensor(lens, device=hidden.device)
        seq = torch.repeat_interleave(torch.arange(len(lens), device=hidden.device), counts)
        sums = torch.zeros(len(lens), hidden.shape[1], device=hidden.device)
        sums.index_add_(0, seq, hidden)
        denom = torch.tensor(lens, dtype=torch.float32, device=hidden.device)[:, None]
        out = sums / denom
        if mode == "mean_sqrt_len":
            out = sums / denom.sqrt()
    if config.normalize:
        out = F.normalize(out, dim=-1)
    return out


def truncate_dimensions(vectors: torch.Tensor, dimensions: int, normalize: bool) -> torch.Tensor:
    """Matryoshka-style shortening: the first `dimensions` values, renormalised when the
    model's vectors are unit-length (as sentence-transformers' truncate_dim does)."""
    out = vectors[:, :dimensions]
    return F.normalize(out, dim=-1) if normalize else out
