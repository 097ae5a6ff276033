"""llama.cpp's K-quant formats Q4_K, Q5_K and Q6_K, quantized in numpy (the `gguf` package
only de-quantizes them). The algorithms are those of ggml-quants.c's reference
`quantize_row_q{4,5,6}_K_ref` (no importance matrix): per 256-value super-block, per
sub-block a scale (and for Q4_K/Q5_K a min) searched for the least weighted error, the
sub-block scales then stored 6-bit (Q4_K/Q5_K) or 8-bit (Q6_K) under one fp16 super-scale.
Written from reading the C, vectorized over all blocks at once; float32 throughout so the
rounding matches. Block layouts (bytes):

  Q4_K (144): d fp16, dmin fp16, scales[12] (6-bit scale+min pairs), qs[128] (4-bit)
  Q5_K (176): d fp16, dmin fp16, scales[12], qh[32] (5th bits), qs[128]
  Q6_K (210): ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] int8, d fp16

Knows nothing of files or models."""

from __future__ import annotations

import numpy as np

QK_K = 256
BLOCK_BYTES = {"Q4_K": 144, "Q5_K": 176, "Q6_K": 210}
_F32 = np.float32


def _nearest_int(x: np.ndarray) -> np.ndarray:
    # ggml's nearest_int rounds half to even (the FPU's mode), as np.rint does
    return np.rint(x).astype(np.int32)


def _levels(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """nearest_int(x) clamped to [lo, hi], kept float32: the C converts each level back to
    float where it multiplies, and numpy would widen float32 * int32 to float64."""
    return np.clip(np.rint(x), lo, hi).astype(_F32)


def _sum(a: np.ndarray) -> np.ndarray:
    """Sum along the last axis left to right in float32, as the C loops `s += ...` do.
    numpy's `sum` adds pairwise (a different rounding), `cumsum` (add.accumulate) in order;
    one ulp decides a later comparison, hence a block's bytes."""
    return np.cumsum(a, axis=-1, dtype=_F32)[..., -1]


def _make_qkx2_quants(
    x: np.ndarray, weights: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale and min per row of x (rows, n) minimizing the weighted squared error of
    x ~ scale * L - min with L in [0, nmax]; returns (scale, the_min >= 0, L).
    Every product is grouped as the C groups it (`w*l*x` is `(w*l)*x`, the error term is
    `w*(diff*diff)`) and every sum runs in order, so the float32 roundings are the C's."""
    xmin = np.minimum(x.min(axis=1), 0).astype(_F32)
    xmax = x.max(axis=1)
    sum_w = _sum(weights)
    sum_x = _sum(weights * x)
    flat = xmax == xmin
    span = np.where(flat, 1, xmax - xmin).astype(_F32)
    iscale = (_F32(nmax) / span).astype(_F32)
    scale = (_F32(1) / iscale).astype(_F32)
    L = _levels(iscale[:, None] * (x - xmin[:, None]), 0, nmax)
    diff = scale[:, None] * L + xmin[:, None] - x
    best = _sum(weights * (diff * diff))
    for step in range(nstep + 1):
        # as in the C, a better min found in one step moves the range of the next ones
        span = np.where(flat, 1, xmax - xmin).astype(_F32)
        iscale = ((_F32(rmin) + _F32(rdelta) * step + _F32(nmax)) / span).astype(_F32)
        laux = _levels(iscale[:, None] * (x - xmin[:, None]), 0, nmax)
        lw = weights * laux
        sum_l = _sum(lw)
        sum_l2 = _sum(lw * laux)
        sum_xl = _sum(lw * x)
        det = sum_w * sum_l2 - sum_l * sum_l
        ok = (det > 0) & ~flat
        safe = np.where(ok, det, 1).astype(_F32)
        this_scale = (sum_w * sum_xl - sum_x * sum_l) / safe
        this_min = (sum_l2 * sum_x - sum_l * sum_xl) / safe
        positive = this_min > 0
        this_scale = np.where(
            positive, sum_xl / np.where(sum_l2 > 0, sum_l2, 1).astype(_F32), this_scale
        ).astype(_F32)
        this_min = np.where(positive, 0, this_min).astype(_F32)
        diff = this_scale[:, None] * laux + this_min[:, None] - x
        err = _sum(weights * (diff * diff))
        better = ok & (err < best)
        L = np.where(better[:, None], laux, L)
        best = np.where(better, err, best)
        scale = np.where(better, this_scale, scale).astype(_F32)
        xmin = np.where(better, this_min, xmin).astype(_F32)
    scale = np.where(flat, 0, scale).astype(_F32)
    L = np.where(flat[:, None], 0, L)
    return scale, (-xmin).astype(_F32), L.astype(np.int32)


def _make_qx_quants(x: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric scale per row (rmse_type 1: weights x^2), searched over 19 candidates, and
    the levels L + nmax it found (kept where the final scale rounds to zero, as the C does).
    Products grouped and sums ordered as in the C (see `_make_qkx2_quants`)."""
    idx = np.abs(x).argmax(axis=1)
    xmax = x[np.arange(len(x)), idx]
    zero = np.abs(xmax) < _F32(1e-15)
    safe = np.where(zero, 1, xmax).astype(_F32)
    w = x * x
    wx = w * x

    def fit(iscale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lq = _levels(iscale[:, None] * x, -nmax, nmax - 1)
        return lq, _sum(wx * lq), _sum(w * lq * lq)

    L, sumlx, suml2 = fit((_F32(-nmax) / safe).astype(_F32))
    scale = np.where(suml2 > 0, sumlx / np.where(suml2 > 0, suml2, 1), 0).astype(_F32)
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        lq, sumlx, suml2 = fit((-(_F32(nmax) + _F32(0.1) * step) / safe).astype(_F32))
        better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        new_scale = (sumlx / np.where(suml2 > 0, suml2, 1)).astype(_F32)
        L = np.where(better[:, None], lq, L)
        scale = np.where(better, new_scale, scale).astype(_F32)
        best = np.where(better, scale * sumlx, best).astype(_F32)
    L = np.where(zero[:, None], 0, L.astype(np.int32) + nmax)
    return np.where(zero, 0, scale).astype(_F32), L


def _fp16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16)


def _pack_scales_k4(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """8 six-bit scales and mins per super-block into 12 bytes (get_scale_min_k4's layout)."""
    out = np.zeros((len(ls), 12), dtype=np.uint8)
    out[:, 0:4] = ls[:, 0:4]
    out[:, 4:8] = lm[:, 0:4]
    out[:, 8:12] = (ls[:, 4:8] & 0xF) | ((lm[:, 4:8] & 0xF) << 4)
    out[:, 0:4] |= (ls[:, 4:8] >> 4) << 6
    out[:, 4:8] |= (lm[:, 4:8] >> 4) << 6
    return out


def _quantize_kx(x: np.ndarray, nmax: int, rmin: float, nstep: int) -> tuple[np.ndarray, ...]:
    """The shared part of Q4_K / Q5_K: (d, dmin, packed scales, L (nb, 256))."""
    nb = len(x)
    sub = x.reshape(nb * 8, 32)
    av_x = np.sqrt(_sum(sub * sub) / _F32(32)).astype(_F32)
    weights = (av_x[:, None] + np.abs(sub)).astype(_F32)
    scales, mins, first = _make_qkx2_quants(sub, weights, nmax, rmin, 0.1, nstep)
    scales, mins = scales.reshape(nb, 8), mins.reshape(nb, 8)
    max_scale, max_min = scales.max(axis=1), mins.max(axis=1)
    inv_scale = np.where(max_scale > 0, _F32(63) / np.where(max_scale > 0, max_scale, 1), 0)
    inv_min = np.where(max_min > 0, _F32(63) / np.where(max_min > 0, max_min, 1), 0)
    ls = np.minimum(_nearest_int(inv_scale[:, None].astype(_F32) * scales), 63).astype(np.uint8)
    lm = np.minimum(_nearest_int(inv_min[:, None].astype(_F32) * mins), 63).astype(np.uint8)
    d = _fp16(max_scale / _F32(63))
    dmin = _fp16(max_min / _F32(63))
    sc = d.astype(_F32)[:, None] * ls
    dm = dmin.astype(_F32)[:, None] * lm
    safe = np.where(sc == 0, 1, sc)
    L = np.clip(_nearest_int((x.reshape(nb, 8, 32) + dm[..., None]) / safe[..., None]), 0, nmax)
    # a sub-block whose scale rounds to zero keeps the levels its search found (as the C)
    L = np.where((sc == 0)[..., None], first.reshape(nb, 8, 32), L)
    L = L.reshape(nb, QK_K).astype(np.uint8)
    return d, dmin, _pack_scales_k4(ls, lm), L


def quantize_q4_k(x: np.ndarray) -> np.ndarray:
    """(n,) float32 with n % 256 == 0 -> the Q4_K bytes (n / 256 * 144,)."""
    nb = x.size // QK_K
    d, dmin, scales, L = _quantize_kx(x.reshape(nb, QK_K).astype(_F32), 15, -1.0, 20)
    q = L.reshape(nb, 4, 2, 32)  # per 64 values: low nibbles = first 32, high = next 32
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(nb, 128)
    out = np.concatenate(
        [d.view(np.uint8).reshape(nb, 2), dmin.view(np.uint8).reshape(nb, 2), scales, qs], axis=1
    )
    return out.reshape(-1)


def quantize_q5_k(x: np.ndarray) -> np.ndarray:
    """(n,) float32 with n % 256 == 0 -> the Q5_K bytes (n / 256 * 176,)."""
    nb = x.size // QK_K
    d, dmin, scales, L = _quantize_kx(x.reshape(nb, QK_K).astype(_F32), 31, -0.5, 15)
    q = L.reshape(nb, 4, 2, 32)
    low = q & 0xF
    qs = (low[:, :, 0] | (low[:, :, 1] << 4)).reshape(nb, 128)
    high = (q >> 4).astype(np.uint8)  # (nb, 4 pairs, 2, 32): bit 2*pair + half
    qh = np.zeros((nb, 32), dtype=np.uint8)
    for pair in range(4):
        qh |= high[:, pair, 0] << (2 * pair)
        qh |= high[:, pair, 1] << (2 * pair + 1)
    out = np.concatenate(
        [d.view(np.uint8).reshape(nb, 2), dmin.view(np.uint8).reshape(nb, 2), scales, qh, qs],
        axis=1,
    )
    return out.reshape(-1)


def quantize_q6_k(x: np.ndarray) -> np.ndarray:
    """(n,) float32 with n % 256 == 0 -> the Q6_K bytes (n / 256 * 210,)."""
    nb = x.size // QK_K
    blocks = x.reshape(nb, QK_K).astype(_F32)
    sub_scales, first = _make_qx_quants(blocks.reshape(nb * 16, 16), 32)
    sub_scales, first = sub_scales.reshape(nb, 16), first.reshape(nb, 16, 16)
    pick = np.abs(sub_scales).argmax(axis=1)
    max_scale = sub_scales[np.arange(nb), pick]
    zero = np.abs(max_scale) < _F32(1e-15)
    iscale = np.where(zero, 0, _F32(-128) / np.where(zero, 1, max_scale)).astype(_F32)
    d = _fp16(np.where(zero, 0, _F32(1) / np.where(zero, 1, iscale)))
    scales = np.minimum(_nearest_int(iscale[:, None] * sub_scales), 127).astype(np.int8)
    scales = np.where(zero[:, None], 0, scales).astype(np.int8)
    step = d.astype(_F32)[:, None] * scales  # (nb, 16)
    safe = np.where(step == 0, 1, step)
    L = np.clip(_nearest_int(blocks.reshape(nb, 16, 16) / safe[..., None]), -32, 31) + 32
    L = np.where((step == 0)[..., None], first, L)
    L = np.where(zero[:, None, None], 0, L)  # the C zeroes an all-zero block's bytes
    L = L.reshape(nb, 2, 4, 32).astype(np.uint8)
    # per 128 values: ql holds the low nibbles of quarters 0|2 and 1|3, qh the top 2 bits
    ql = np.concatenate(
        [
            L[:, :, 0] & 0xF | ((L[:, :, 2] & 0xF) << 4),
            L[:, :, 1] & 0xF | ((L[:, :, 3] & 0xF) << 4),
        ],
        axis=2,
    ).reshape(nb, 128)
    top = L >> 4
    qh = top[:, :, 0] | (top[:, :, 1] << 2) | (top[:, :, 2] << 4) | (top[:, :, 3] << 6)
    out = np.concatenate(
        [ql, qh.reshape(nb, 64), scales.view(np.uint8), d.view(np.uint8).reshape(nb, 2)], axis=1
    )
    return out.reshape(-1)


QUANTIZERS = {"Q4_K": quantize_q4_k, "Q5_K": quantize_q5_k, "Q6_K": quantize_q6_k}
