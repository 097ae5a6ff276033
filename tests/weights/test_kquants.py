"""The numpy K-quantizers against a line-by-line scalar reading of ggml-quants.c's
`quantize_row_q{4,5,6}_K_ref` (float32 arithmetic, loops as in the C): the same bytes; and
the bytes de-quantize through the `gguf` package (its block layout) back near the input."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType, quants

from hearth.weights.kquants import QUANTIZERS

f32 = np.float32


def nearest_int(v: float) -> int:
    return int(np.rint(f32(v)))


def make_qkx2(x, w, nmax, rmin, rdelta, nstep):  # type: ignore[no-untyped-def]
    n = len(x)
    mn, mx = f32(x[0]), f32(x[0])
    sum_w, sum_x = f32(w[0]), f32(w[0] * x[0])
    for i in range(1, n):
        mn, mx = min(mn, x[i]), max(mx, x[i])
        sum_w = f32(sum_w + w[i])
        sum_x = f32(sum_x + w[i] * x[i])
    mn = min(mn, f32(0))
    if mx == mn:
        return f32(0), f32(-mn), [0] * n
    iscale = f32(nmax / f32(mx - mn))
    scale = f32(1 / iscale)
    L = [max(0, min(nmax, nearest_int(iscale * (x[i] - mn)))) for i in range(n)]
    best = f32(0)
    for i in range(n):
        d = f32(scale * L[i] + mn - x[i])
        best = f32(best + w[i] * f32(d * d))  # the C squares diff first
    for step in range(nstep + 1):
        iscale = f32(f32(rmin + rdelta * step + nmax) / f32(mx - mn))
        sum_l = sum_l2 = sum_xl = f32(0)
        aux = []
        for i in range(n):
            lv = max(0, min(nmax, nearest_int(iscale * (x[i] - mn))))
            aux.append(lv)
            sum_l = f32(sum_l + w[i] * lv)
            sum_l2 = f32(sum_l2 + w[i] * lv * lv)
            sum_xl = f32(sum_xl + w[i] * lv * x[i])
        det = f32(sum_w * sum_l2 - sum_l * sum_l)
        if det > 0:
            this_scale = f32((sum_w * sum_xl - sum_x * sum_l) / det)
            this_min = f32((sum_l2 * sum_x - sum_l * sum_xl) / det)
            if this_min > 0:
                this_min, this_scale = f32(0), f32(sum_xl / sum_l2)
            err = f32(0)
            for i in range(n):
                d = f32(this_scale * aux[i] + this_min - x[i])
                err = f32(err + w[i] * f32(d * d))
            if err < best:
                L, best, scale, mn = aux, err, this_scale, this_min
    return scale, f32(-mn), L


def ref_kx(x, nmax, rmin, nstep):  # type: ignore[no-untyped-def]
    """Q4_K (nmax 15) / Q5_K (nmax 31) of one super-block: d, dmin, scales bytes, L."""
    scales, mins, L = [], [], []
    for j in range(8):
        sub = x[32 * j : 32 * j + 32]
        av = f32(np.sqrt(f32(sum(f32(v * v) for v in sub)) / f32(32)))
        w = [f32(av + abs(v)) for v in sub]
        s, m, lv = make_qkx2(sub, w, nmax, rmin, 0.1, nstep)
        scales.append(s)
        mins.append(m)
        L += lv
    max_scale, max_min = max(scales), max(mins)
    inv_s = f32(63 / max_scale) if max_scale > 0 else f32(0)
    inv_m = f32(63 / max_min) if max_min > 0 else f32(0)
    packed = [0] * 12
    for j in range(8):
        ls = min(63, nearest_int(inv_s * scales[j]))
        lm = min(63, nearest_int(inv_m * mins[j]))
        if j < 4:
            packed[j], packed[j + 4] = ls, lm
        else:
            packed[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4)
            packed[j - 4] |= (ls >> 4) << 6
            packed[j] |= (lm >> 4) << 6
    d, dmin = np.float16(max_scale / f32(63)), np.float16(max_min / f32(63))
    for j in range(8):
        if j < 4:
            sc, m = packed[j] & 63, packed[j + 4] & 63
        else:
            sc = (packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4)
            m = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4)
        dd = f32(f32(d) * sc)
        if not dd:
            continue
        dm = f32(f32(dmin) * m)
        for i in range(32):
            L[32 * j + i] = max(0, min(nmax, nearest_int(f32(x[32 * j + i] + dm) / dd)))
    return d, dmin, packed, L


def ref_q4_k(x: np.ndarray) -> bytes:
    d, dmin, packed, L = ref_kx(x, 15, -1.0, 20)
    qs = [L[j + i] | (L[j + i + 32] << 4) for j in range(0, 256, 64) for i in range(32)]
    return d.tobytes() + dmin.tobytes() + bytes(packed) + bytes(qs)


def ref_q5_k(x: np.ndarray) -> bytes:
    d, dmin, packed, L = ref_kx(x, 31, -0.5, 15)
    qh, ql = [0] * 32, []
    m1, m2 = 1, 2
    for n in range(0, 256, 64):
        for j in range(32):
            l1, l2 = L[n + j], L[n + j + 32]
            if l1 > 15:
                l1 -= 16
                qh[j] |= m1
            if l2 > 15:
                l2 -= 16
                qh[j] |= m2
            ql.append(l1 | (l2 << 4))
        m1, m2 = m1 << 2, m2 << 2
    return d.tobytes() + dmin.tobytes() + bytes(packed) + bytes(qh) + bytes(ql)


def make_qx(x, nmax):  # type: ignore[no-untyped-def]
    amax, mx = f32(0), f32(0)
    for v in x:
        if abs(v) > amax:
            amax, mx = abs(v), v
    if amax < 1e-15:
        return f32(0), [0] * len(x)
    iscale = f32(-nmax / mx)
    sumlx = suml2 = f32(0)
    L = []
    for v in x:
        lv = max(-nmax, min(nmax - 1, nearest_int(iscale * v)))
        L.append(lv + nmax)
        w = f32(v * v)
        sumlx, suml2 = f32(sumlx + w * v * lv), f32(suml2 + w * lv * lv)
    scale = f32(sumlx / suml2) if suml2 else f32(0)
    best = f32(scale * sumlx)
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = f32(-(nmax + f32(0.1) * step) / mx)
        sumlx = suml2 = f32(0)
        for v in x:
            lv = max(-nmax, min(nmax - 1, nearest_int(iscale * v)))
            w = f32(v * v)
            sumlx, suml2 = f32(sumlx + w * v * lv), f32(suml2 + w * lv * lv)
        if suml2 > 0 and sumlx * sumlx > best * suml2:
            L = [nmax + max(-nmax, min(nmax - 1, nearest_int(iscale * v))) for v in x]
            scale = f32(sumlx / suml2)
            best = f32(scale * sumlx)
    return scale, L


def ref_q6_k(x: np.ndarray) -> bytes:
    scales, L = [], []
    for ib in range(16):
        s, lv = make_qx(x[16 * ib : 16 * ib + 16], 32)
        scales.append(s)
        L += lv
    max_scale = max(scales, key=abs)
    iscale = f32(-128 / max_scale)
    d = np.float16(1 / iscale)
    sc = [min(127, nearest_int(iscale * s)) for s in scales]
    for j in range(16):
        dd = f32(f32(d) * sc[j])
        if not dd:
            continue
        for i in range(16):
            L[16 * j + i] = max(-32, min(31, nearest_int(x[16 * j + i] / dd))) + 32
    ql, qh = [0] * 128, [0] * 64
    for half in range(2):
        j = 128 * half
        for i in range(32):
            q = [L[j + i + 32 * k] for k in range(4)]
            ql[64 * half + i] = (q[0] & 0xF) | ((q[2] & 0xF) << 4)
            ql[64 * half + i + 32] = (q[1] & 0xF) | ((q[3] & 0xF) << 4)
            qh[32 * half + i] = (
                (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6)
            )
    return bytes(ql) + bytes(qh) + np.array(sc, dtype=np.int8).tobytes() + d.tobytes()


REFERENCE = {"Q4_K": ref_q4_k, "Q5_K": ref_q5_k, "Q6_K": ref_q6_k}


def _blocks() -> np.ndarray:
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((4, 256)) * 0.03).astype(f32)
    x[1, :32] = 0  # a zero sub-block
    x[2] += 0.05  # all positive: the min is clamped to zero
    x[3, 5] = 0.9  # an outlier
    return x


@pytest.mark.parametrize("kind", ["Q4_K", "Q5_K", "Q6_K"])
def test_same_bytes_as_the_scalar_reference(kind: str) -> None:
    x = _blocks()
    got = QUANTIZERS[kind](x.reshape(-1)).tobytes()
    want = b"".join(REFERENCE[kind](row) for row in x)
    assert len(got) == len(want) == 4 * quants.GGML_QUANT_SIZES[GGMLQuantizationType[kind]][1]
    assert got == want


@pytest.mark.parametrize(("kind", "budget"), [("Q4_K", 0.09), ("Q5_K", 0.045), ("Q6_K", 0.022)])
def test_gguf_dequantizes_them(kind: str, budget: float) -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(256 * 32) * 0.05).astype(f32)
    data = QUANTIZERS[kind](x)
    y = quants.dequantize(data.reshape(1, -1), GGMLQuantizationType[kind]).reshape(-1)
    assert np.sqrt(np.mean((y - x) ** 2) / np.mean(x**2)) < budget
