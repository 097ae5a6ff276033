"""Every quant type hearth promises de-quantizes correctly from a real GGUF file on disk.

Q8_0..Q5_1 and the float types are written with `gguf.quants.quantize`; gguf-py cannot
quantize the K-quants, so Q4_K / Q5_K / Q6_K blocks are packed here from random codes by
ggml's block layout and the expected values computed from the codes — an independent check
of the layout, not the library checking itself."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q

from hearth.weights.gguf_metadata import read_gguf_header
from hearth.weights.gguf_quant import GGUFQuantizedTensor, read_tensor

ROWS, COLS = 3, 512  # two K-quant super-blocks per row
rng = np.random.default_rng(0)


def _f16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16)


def _pack_scales_k4(sc: np.ndarray, m: np.ndarray) -> np.ndarray:
    """8 six-bit scales and mins → ggml's 12-byte packing (inverse of get_scale_min_k4)."""
    out = np.zeros(12, dtype=np.uint8)
    for j in range(4):
        out[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6)
        out[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6)
        out[j + 8] = (sc[j + 4] & 15) | ((m[j + 4] & 15) << 4)
    return out


def _q45_k_block(bits: int) -> tuple[bytes, np.ndarray]:
    """One Q4_K (bits=4) or Q5_K (bits=5) super-block of 256 values and its expected values."""
    d, dmin = _f16(rng.uniform(0.01, 0.1, 1)), _f16(rng.uniform(0.01, 0.1, 1))
    sc, m = rng.integers(0, 64, 8), rng.integers(0, 64, 8)
    q = rng.integers(0, 2**bits, 256)
    expected = np.empty(256, dtype=np.float32)
    for j in range(8):  # sub-block j: y = d * sc_j * q - dmin * m_j
        sub = q[32 * j : 32 * j + 32]
        expected[32 * j : 32 * j + 32] = np.float32(d[0]) * sc[j] * sub - np.float32(dmin[0]) * m[j]
    qs = np.zeros(128, dtype=np.uint8)
    qh = np.zeros(32, dtype=np.uint8)
    for c in range(4):  # 64 values per chunk: low nibbles first 32, high nibbles next 32
        lo, hi = q[64 * c : 64 * c + 32], q[64 * c + 32 : 64 * c + 64]
        qs[32 * c : 32 * c + 32] = (lo & 15) | ((hi & 15) << 4)
        qh |= (((lo >> 4) & 1) << (2 * c)).astype(np.uint8)
        qh |= (((hi >> 4) & 1) << (2 * c + 1)).astype(np.uint8)
    head = d.tobytes() + dmin.tobytes() + _pack_scales_k4(sc, m).tobytes()
    return head + (qh.tobytes() if bits == 5 else b"") + qs.tobytes(), expected


def _q6_k_block() -> tuple[bytes, np.ndarray]:
    d = _f16(rng.uniform(0.001, 0.01, 1))
    scales = rng.integers(-128, 128, 16).astype(np.int8)
    q = rng.integers(0, 64, 256)
    expected = np.float32(d[0]) * scales.astype(np.float32).repeat(16) * (q - 32)
    ql = np.zeros(128, dtype=np.uint8)
    qh = np.zeros(64, dtype=np.uint8)
    for h in range(2):  # each half of 128 values: four runs of 32
        r = [q[128 * h + 32 * k : 128 * h + 32 * k + 32] for k in range(4)]
        ql[64 * h : 64 * h + 32] = (r[0] & 15) | ((r[2] & 15) << 4)
        ql[64 * h + 32 : 64 * h + 64] = (r[1] & 15) | ((r[3] & 15) << 4)
        qh[32 * h : 32 * h + 32] = (
            (r[0] >> 4) | ((r[1] >> 4) << 2) | ((r[2] >> 4) << 4) | ((r[3] >> 4) << 6)
        )
    return ql.tobytes() + qh.tobytes() + scales.tobytes() + d.tobytes(), expected


def _k_tensor(kind: Q) -> tuple[np.ndarray, np.ndarray]:
    make = {Q.Q4_K: lambda: _q45_k_block(4), Q.Q5_K: lambda: _q45_k_block(5), Q.Q6_K: _q6_k_block}[
        kind
    ]
    blocks = [make() for _ in range(ROWS * COLS // 256)]
    raw = np.frombuffer(b"".join(b for b, _ in blocks), dtype=np.uint8).reshape(ROWS, -1)
    return raw, np.concatenate([e for _, e in blocks]).reshape(ROWS, COLS)


SIMPLE = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1]
K_QUANTS = [Q.Q4_K, Q.Q5_K, Q.Q6_K]
# worst-case round-trip error of each simple type on N(0, 1) data
TOLERANCE = {
    Q.F32: 0,
    Q.F16: 2e-3,
    Q.BF16: 2e-2,
    Q.Q8_0: 0.03,
    Q.Q4_0: 0.5,
    Q.Q4_1: 0.4,
    Q.Q5_0: 0.25,
    Q.Q5_1: 0.2,
}


@pytest.fixture(scope="module")
def quant_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """One GGUF file holding a (ROWS, COLS) tensor of every type; returns the path and each
    tensor's expected de-quantized values (and, for simple types, the original floats)."""
    path = tmp_path_factory.mktemp("quant") / "quants.gguf"
    writer = gguf.GGUFWriter(str(path), arch="llama")
    expected: dict[str, np.ndarray] = {}
    for kind in SIMPLE:
        original = rng.standard_normal((ROWS, COLS)).astype(np.float32)
        if kind in (Q.F32, Q.F16):
            writer.add_tensor(
                kind.name, original.astype(np.float32 if kind == Q.F32 else np.float16)
            )
        else:
            data = gguf.quants.quantize(original, kind)
            writer.add_tensor(kind.name, data, raw_dtype=kind)
        expected[kind.name] = original
    for kind in K_QUANTS:
        raw, values = _k_tensor(kind)
        writer.add_tensor(kind.name, raw, raw_dtype=kind)
        expected[kind.name] = values
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path, expected


def _read(path: Path, name: str, **kw: object) -> torch.Tensor | GGUFQuantizedTensor:
    info = {t.name: t for t in read_gguf_header(path).tensors}[name]
    mapped = np.memmap(path, dtype=np.uint8, mode="c")
    return read_tensor(mapped, info, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", SIMPLE, ids=lambda k: k.name)
def test_simple_types_round_trip(quant_file: tuple[Path, dict[str, np.ndarray]], kind: Q) -> None:
    path, expected = quant_file
    got = _read(path, kind.name)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    assert tuple(got.shape) == (ROWS, COLS)
    err = np.abs(got.numpy() - expected[kind.name]).max()
    assert err <= TOLERANCE[kind], f"{kind.name}: max error {err}"
    if kind != Q.F32:
        assert err > 0  # really quantized, not stored as floats by accident


@pytest.mark.parametrize("kind", K_QUANTS, ids=lambda k: k.name)
def test_k_quants_match_their_codes(
    quant_file: tuple[Path, dict[str, np.ndarray]], kind: Q
) -> None:
    path, expected = quant_file
    got = _read(path, kind.name)
    assert isinstance(got, torch.Tensor) and tuple(got.shape) == (ROWS, COLS)
    np.testing.assert_allclose(got.numpy(), expected[kind.name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", [Q.Q4_1, Q.Q8_0, Q.Q4_K, Q.Q6_K], ids=lambda k: k.name)
def test_keep_quantized(quant_file: tuple[Path, dict[str, np.ndarray]], kind: Q) -> None:
    path, _ = quant_file
    kept = _read(path, kind.name, keep_quantized=True)
    assert isinstance(kept, GGUFQuantizedTensor)
    assert kept.ggml_type == kind and kept.shape == (ROWS, COLS)
    assert kept.data.dtype == torch.uint8 and kept.data.shape[0] == ROWS
    full = _read(path, kind.name)
    assert torch.equal(kept.dequantize(), full)
    assert torch.equal(kept.dequantize(torch.bfloat16), full.to(torch.bfloat16))  # type: ignore[union-attr]


def test_requested_dtype(quant_file: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, _ = quant_file
    for name in ("F16", "BF16", "Q5_0", "Q5_K"):
        got = _read(path, name, dtype=torch.bfloat16)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.bfloat16
        ref = _read(path, name)
        assert torch.equal(got, ref.to(torch.bfloat16))  # type: ignore[union-attr]
