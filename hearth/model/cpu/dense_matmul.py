"""The C float32 matmul of few rows (dense_matmul.c): y = x @ w.T (+ bias) with the
weight read in place, once per call, for the decode steps of a float32 model. On the 2-core
AVX-512 machine one row through all 211 projections of SmolLM2-135M (537 MB) takes MKL's
SGEMM 51 ms and oneDNN (which reorders the weight per call) 34 ms; the CPU backend sends
calls of up to `MAX_ROWS` rows here. Built at first use like the other kernels
(native_build.py); no compiler or no AVX-512F: `available()` is False and the backend
keeps oneDNN. Knows nothing of layers or models."""

from __future__ import annotations

import ctypes
import logging

import torch

from hearth.model.cpu import native_build, thread_pool

log = logging.getLogger(__name__)

# rows up to which the kernel is at least even with oneDNN (all 211 SmolLM2 projections, 2
# threads: 1 row 35 -> 26 ms, 4 rows 36 -> 26, 8 rows 40 -> 34, 16 rows even); above, the
# product is compute-bound and oneDNN's blocking wins (32 rows: 76 vs 86 ms)
MAX_ROWS = 16


def _setup(lib: ctypes.CDLL) -> None:
    pointer, int32 = ctypes.c_void_p, ctypes.c_int
    lib.hearth_dense_matmul.restype = int32
    lib.hearth_dense_matmul.argtypes = [pointer, int32, int32, int32, pointer, pointer, pointer]
    lib.hearth_dense_matmul.argtypes += [int32, int32]
    lib.hearth_dense_set_pool.argtypes = [pointer]
    lib.hearth_dense_set_pool(thread_pool.pointer())


KERNEL = native_build.Kernel(
    "dense_matmul", log, "float32 matmuls use oneDNN/MKL", _setup,
    probe="hearth_dense_available", needs="AVX-512F",
)  # fmt: skip


def available(level: str | None = None) -> bool:
    """Whether the kernel is built and loaded for instruction-set `level` (isa.py;
    None: the level loaded last) with its AVX-512F road (tries once per level)."""
    return KERNEL.load(level) is not None


def matmul(
    rows: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    threads: tuple[int, bool],
) -> torch.Tensor:
    """rows (M, K) @ weight (N, K).T (+ bias (N,)) -> (M, N), all float32 CPU tensors; call
    `available()` first. threads: (count, on the pool) (cpu/backend.py)."""
    lib = KERNEL.lib
    assert lib is not None, "call available() first"
    x = rows.contiguous()
    w = weight.contiguous()
    m, k = x.shape
    n = w.shape[0]
    if w.shape[1] != k:
        raise ValueError(f"input has {k} columns, the weight {w.shape[1]}")
    out = torch.empty(m, n, dtype=torch.float32)
    if m == 0:
        return out
    b = bias.contiguous() if bias is not None else None
    status = lib.hearth_dense_matmul(
        x.data_ptr(),
        m,
        k,
        n,
        w.data_ptr(),
        b.data_ptr() if b is not None else None,
        out.data_ptr(),
        *threads,
    )
    if status != 0:
        raise ValueError(f"dense matmul: shape ({m}, {k}) x ({n}, {k}) refused (status {status})")
    return out
