"""hearth's quantizers against llama.cpp's own (llama-cpp-python's libggml): the same bytes.
`ggml_quantize_chunk` is what `llama_model_quantize` calls per tensor (without an importance
matrix the K-quants take ggml-quants.c's `quantize_row_*_ref` road), so a tiny tensor checks
the arithmetic; the slow test quantizes SmolLM2 whole both ways and compares the files.
llama-cpp-python is not a test dependency (a long source build): these skip without it."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, quants

from hearth.weights.gguf_quantize import _quantize, quantize_gguf

T = GGMLQuantizationType
KINDS = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K]


@pytest.fixture(scope="module")
def ggml_quantize_chunk() -> Callable[..., int]:
    llama_cpp = pytest.importorskip("llama_cpp")
    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    fn = lib.ggml_quantize_chunk
    # size_t ggml_quantize_chunk(type, const float * src, void * dst, int64_t start,
    #                            int64_t nrows, int64_t n_per_row, const float * imatrix)
    fn.restype = ctypes.c_size_t
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    fn.argtypes += [ctypes.c_int64] * 3 + [ctypes.c_void_p]
    return fn


def _rows() -> np.ndarray:
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((24, 512)) * 0.04).astype(np.float32)
    x[0, :32] = 0  # a zero (sub-)block
    x[1] += 0.06  # all positive: the min is clamped to zero
    x[2, 7] = 1.5  # an outlier
    x[3, :] = -0.02  # flat and negative
    x[4] *= 1e-6  # tiny values
    x[5, ::2] = 0  # half zeros
    x[6] = np.round(x[6] * 64) / 64  # values on a grid: ties in the level rounding
    return x


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_same_bytes_as_ggml(ggml_quantize_chunk: Callable[..., int], kind: T) -> None:
    x = _rows()
    block, size = quants.GGML_QUANT_SIZES[kind]
    want = np.zeros(x.size // block * size, dtype=np.uint8)
    n = ggml_quantize_chunk(int(kind), x.ctypes.data, want.ctypes.data, 0, *x.shape, None)
    assert n == want.size
    got = _quantize(x, kind).reshape(-1)
    bad = (got.reshape(-1, size) != want.reshape(-1, size)).any(axis=1)
    assert not bad.any(), f"{int(bad.sum())} of {bad.size} {kind.name} blocks differ"


@pytest.mark.slow  # quantizes SmolLM2-135M twice (about a minute)
@pytest.mark.parametrize("type_name", ["Q4_K_M", "Q6_K"])
def test_smollm2_same_file_as_llama_quantize(
    smollm2_gguf: Path, tmp_path: Path, type_name: str
) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    ours, theirs = tmp_path / "hearth.gguf", tmp_path / "llama.gguf"
    quantize_gguf(smollm2_gguf, ours, type_name, allow_requantize=True)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{type_name}")
    params.allow_requantize = True
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(
        str(smollm2_gguf).encode(), str(theirs).encode(), ctypes.byref(params)
    )
    assert rc == 0
    a = {t.name: t for t in GGUFReader(ours).tensors}
    b = {t.name: t for t in GGUFReader(theirs).tensors}
    assert a.keys() == b.keys()
    differ = [
        name
        for name in a
        if a[name].tensor_type != b[name].tensor_type
        or not np.array_equal(a[name].data, b[name].data)
    ]
    assert differ == []
