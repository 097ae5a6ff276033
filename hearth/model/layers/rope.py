"""Rotary position embeddings: inverse frequencies for each HF rope type (default, linear,
dynamic NTK, llama3, YaRN, longrope, partial rotary) and their application to q/k, in
halves (Llama) or interleaved pairs (DeepSeek). Knows nothing of layers or caches."""

from __future__ import annotations

import math

import torch

from hearth.weights.config import RopeConfig


def _base_inv_freq(theta: float, dim: int) -> torch.Tensor:  # (dim/2,) float32
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def _llama3(cfg: RopeConfig, inv_freq: torch.Tensor) -> torch.Tensor:
    assert cfg.original_max_position_embeddings is not None
    old_len = cfg.original_max_position_embeddings
    low_wavelen = old_len / cfg.low_freq_factor
    high_wavelen = old_len / cfg.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    # long wavelengths are interpolated by factor, short ones kept, the middle blended
    scaled = torch.where(wavelen > low_wavelen, inv_freq / cfg.factor, inv_freq)
    smooth = (old_len / wavelen - cfg.low_freq_factor) / (
        cfg.high_freq_factor - cfg.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / cfg.factor + smooth * scaled
    is_medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(is_medium, smoothed, scaled)


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _yarn(cfg: RopeConfig) -> tuple[torch.Tensor, float]:
    assert cfg.original_max_position_embeddings is not None
    dim, base, factor = cfg.rotary_dim, cfg.theta, cfg.factor
    attention_factor = cfg.attention_factor
    if attention_factor is None:
        if cfg.mscale and cfg.mscale_all_dim:
            attention_factor = _yarn_mscale(factor, cfg.mscale) / _yarn_mscale(
                factor, cfg.mscale_all_dim
            )
        else:
            attention_factor = _yarn_mscale(factor)

    orig = cfg.original_max_position_embeddings

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(orig / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(cfg.beta_fast), correction_dim(cfg.beta_slow)
    if cfg.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2).float() / dim)
    extrapolation = 1.0 / pos_freqs
    interpolation = 1.0 / (factor * pos_freqs)
    keep = 1 - ramp  # 1 where dims keep their original (extrapolated) frequency
    return interpolation * (1 - keep) + extrapolation * keep, float(attention_factor)


class RotaryEmbedding:
    """cos/sin tables for one RopeConfig. Not an nn.Module: it holds no weights, only
    frequencies derived from the config (kept on the device of the last call)."""

    def __init__(self, cfg: RopeConfig) -> None:
        # frequencies are computed on the CPU even while the decoder is built on "meta"
        with torch.device("cpu"):
            self._init(cfg)

    def _init(self, cfg: RopeConfig) -> None:
        self.cfg = cfg
        self.attention_factor = 1.0
        if cfg.type == "yarn":
            self.inv_freq, self.attention_factor = _yarn(cfg)
        else:
            self.inv_freq = _base_inv_freq(cfg.theta, cfg.rotary_dim)
        if cfg.type == "linear":
            self.inv_freq = self.inv_freq / cfg.factor
        elif cfg.type == "llama3":
            self.inv_freq = _llama3(cfg, self.inv_freq)
        elif cfg.type == "longrope":
            assert cfg.original_max_position_embeddings is not None
            shape = _base_inv_freq(cfg.theta, cfg.rotary_dim)
            self.short_inv_freq = shape / torch.tensor(cfg.short_factor)
            self.long_inv_freq = shape / torch.tensor(cfg.long_factor)
            self.inv_freq = self.short_inv_freq
            if cfg.attention_factor is not None:
                self.attention_factor = cfg.attention_factor
            elif cfg.factor > 1:
                orig = cfg.original_max_position_embeddings
                self.attention_factor = math.sqrt(1 + math.log(cfg.factor) / math.log(orig))

    def _per_token_inv_freq(self, seq_lens: torch.Tensor) -> torch.Tensor:
        """(T, dim/2) frequencies for rope types that depend on the sequence length so far
        (dynamic NTK, longrope); seq_lens: (T,) max position + 1 of each token's sequence."""
        cfg, dim = self.cfg, self.cfg.rotary_dim
        if cfg.type == "dynamic":
            # NTK: the base grows once a sequence outgrows max_position_embeddings
            length = seq_lens.float().clamp(min=cfg.max_position_embeddings)
            ratio = cfg.factor * length / cfg.max_position_embeddings - (cfg.factor - 1)
            base = cfg.theta * ratio ** (dim / (dim - 2))  # (T,)
            exponent = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
            return 1.0 / (base[:, None] ** exponent[None, :])
        assert cfg.original_max_position_embeddings is not None
        long = (seq_lens > cfg.original_max_position_embeddings)[:, None]
        return torch.where(long, self.long_inv_freq[None, :], self.short_inv_freq[None, :])

    def cos_sin(
        self, positions: torch.Tensor, seq_lens: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """positions, seq_lens: (T,). Returns cos, sin: (T, rotary_dim / 2) in dtype."""
        device = positions.device
        if self.cfg.type in ("dynamic", "longrope"):
            inv_freq = self._per_token_inv_freq(seq_lens.cpu()).to(device)
            freqs = positions.float()[:, None] * inv_freq
        else:
            self.inv_freq = self.inv_freq.to(device)
            freqs = positions.float()[:, None] * self.inv_freq[None, :]
        cos = freqs.cos() * self.attention_factor
        sin = freqs.sin() * self.attention_factor
        return cos.to(dtype), sin.to(dtype)


def apply_rope(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool = False
) -> torch.Tensor:
    """Rotate the first rotary_dim dims of each head. x: (T, heads, head_dim); cos/sin:
    (T, rotary_dim / 2). Interleaved rotates pairs (x0, x1), (x2, x3), ... and returns the
    rotated dims de-interleaved (evens then odds): q and k get the same permutation, so
    q·k is unchanged (DeepSeek-V3 in transformers does the same)."""
    rotary_dim = cos.shape[-1] * 2
    rot, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    c, s = cos[:, None, :], sin[:, None, :]  # (T, 1, rotary_dim / 2)
    if interleaved:
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
    else:
        x1, x2 = rot[..., : rotary_dim // 2], rot[..., rotary_dim // 2 :]
    rotated = torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)
    return torch.cat((rotated, rest), dim=-1) if rest.shape[-1] else rotated
