"""Weights → the layouts of quant.py: GGUF blocks re-packed (exactly where the formats
agree) and float weights quantized.

Exact re-packs (the only loss is rounding the fp16 block scale/min to bf16):
  Q4_0  w = (q - 8) d          → int4 group 32, scale d, zero 0
  Q4_1  w = q d + m            → int4 group 32, scale d, zero m + 8 d
  Q4_K  w = d sc q - dmin mn   → int4 group 32 (its 32-wide sub-blocks), scale d sc,
                                 zero 8 d sc - dmin mn; recovered from the gguf de-quantizer
                                 by decoding the blocks with all codes 0 and all codes 1
Everything else (Q8_0, Q5_*, Q6_K, Q2_K, Q3_K, float) cannot be re-packed bit for bit: it is
de-quantized and then quantized again (`quantize_int8`: per-row symmetric 8-bit, or
`quantize_int4`: group-32 asymmetric min/max 4-bit).

Knows nothing of names, layers or models; GGUF blocks only through `gguf` and
GGUFQuantizedTensor."""

from __future__ import annotations

import numpy as np
import torch
from gguf import quants
from gguf.constants import GGMLQuantizationType as T

from hearth.model.layers.quant import Int4Weight, Int8Weight
from hearth.weights.gguf_quant import GGUFQuantizedTensor

GROUP = 32
# byte range of the 4-bit codes inside one block, for the types with an exact int4 re-pack
_CODE_BYTES = {T.Q4_0: (2, 18), T.Q4_1: (4, 20), T.Q4_K: (16, 144)}
EXACT_INT4_TYPES = frozenset(_CODE_BYTES)


def _round_bf16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).float()


def quantize_int8(w: torch.Tensor) -> Int8Weight:
    """(N, K) float → per-row symmetric int8 (scale = max|row| / 127, rounded to bf16 first
    so the codes are chosen against the scale the kernel will use)."""
    w = w.float()
    scales = _round_bf16(w.abs().amax(dim=1).clamp(min=1e-8) / 127.0)  # (N,)
    q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return Int8Weight(q, scales.to(torch.bfloat16))


def quantize_int4(w: torch.Tensor, group_size: int = GROUP) -> Int4Weight:
    """(N, K) float → int4 codes with one (scale, zero) per group of `group_size` columns:
    asymmetric min/max, scale = (max - min) / 15."""
    n, k = w.shape
    g = w.float().reshape(n, k // group_size, group_size)
    lo, hi = g.amin(dim=-1), g.amax(dim=-1)  # (N, G)
    scale = _round_bf16(((hi - lo) / 15.0).clamp(min=1e-8))
    zero = _round_bf16(lo + 8.0 * scale)
    q = torch.round((g - zero[..., None]) / scale[..., None] + 8.0).clamp(0, 15)
    sz = torch.stack([scale, zero], dim=-1).transpose(0, 1)  # (G, N, 2)
    return Int4Weight(q.reshape(n, k).int(), sz.to(torch.bfloat16).contiguous(), group_size)


def _q4_01(t: GGUFQuantizedTensor) -> Int4Weight:
    """Q4_0 / Q4_1 blocks parsed directly: [d fp16][m fp16 (Q4_1)][16 bytes: element j in the
    low nibble of byte j, element j + 16 in the high nibble]."""
    n, k = t.shape
    start, stop = _CODE_BYTES[t.ggml_type]
    blocks = t.data.reshape(n, k // GROUP, stop)  # (N, G, bytes)
    d = blocks[..., 0:2].contiguous().view(torch.float16).float()[..., 0]  # (N, G)
    if t.ggml_type == T.Q4_1:
        m = blocks[..., 2:4].contiguous().view(torch.float16).float()[..., 0]
        zero = m + 8.0 * d
    else:
        zero = torch.zeros_like(d)
    codes = blocks[..., start:stop]
    q = torch.cat([codes & 0x0F, codes >> 4], dim=-1).reshape(n, k).int()
    sz = torch.stack([d, zero], dim=-1).transpose(0, 1).to(torch.bfloat16).contiguous()
    return Int4Weight(q, sz, GROUP)


def _affine_int4(t: GGUFQuantizedTensor) -> Int4Weight:
    """Any 4-bit type whose groups of 32 are w = a q + b: decode the blocks as they are, with
    every code 0 (→ b) and with every code 1 (→ a + b); then q = (w - b) / a exactly."""
    n, k = t.shape
    start, stop = _CODE_BYTES[t.ggml_type]
    block_elems, _ = quants.GGML_QUANT_SIZES[t.ggml_type]
    raw = t.data.numpy().reshape(n, k // block_elems, -1)

    def decode(codes: int | None) -> torch.Tensor:
        blocks = raw if codes is None else raw.copy()
        if codes is not None:
            blocks[..., start:stop] = codes
        flat = blocks.reshape(n, -1)
        return torch.from_numpy(np.ascontiguousarray(quants.dequantize(flat, t.ggml_type)))

    w = decode(None).reshape(n, k // GROUP, GROUP)
    b = decode(0x00).reshape(n, k // GROUP, GROUP)[..., 0]  # (N, G)
    a = decode(0x11).reshape(n, k // GROUP, GROUP)[..., 0] - b
    safe = torch.where(a == 0, torch.ones_like(a), a)
    q = torch.round((w - b[..., None]) / safe[..., None]).clamp(0, 15)
    q = torch.where((a == 0)[..., None], torch.zeros_like(q), q)
    sz = torch.stack([a, b + 8.0 * a], dim=-1).transpose(0, 1).to(torch.bfloat16).contiguous()
    return Int4Weight(q.reshape(n, k).int(), sz, GROUP)


def int4_from_gguf(t: GGUFQuantizedTensor) -> Int4Weight:
    """Exact re-pack of a Q4_0 / Q4_1 / Q4_K weight (N, K); raises ValueError otherwise."""
    if t.ggml_type not in EXACT_INT4_TYPES or len(t.shape) != 2:
        raise ValueError(f"{t.ggml_type.name} {t.shape} has no exact int4 re-pack")
    if t.ggml_type in (T.Q4_0, T.Q4_1):
        return _q4_01(t)
    return _affine_int4(t)
