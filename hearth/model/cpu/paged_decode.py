"""The C paged-decode attention kernel (paged_decode.c): built at first use with the
system C compiler, cached per source and CPU, loaded with ctypes.

Why a kernel: a decode step's attention in plain torch gathers every sequence's K/V through
the block table into a padded copy (written, then read again by SDPA); with 32 sequences of
~1,000 tokens that was ~180 ms of a step on 2 cores. The kernel reads each cached key and
value once, in place, and stops at each sequence's own length.

No compiler or a failed build: `available()` is False and attention takes the torch road
(same results). Knows nothing of models or the engine."""

from __future__ import annotations

import ctypes
import logging

import torch

from hearth.model.cpu import native_build, thread_pool

log = logging.getLogger(__name__)

_DTYPES = {torch.float32: 0, torch.bfloat16: 1}


def _setup(lib: ctypes.CDLL) -> None:
    fn = lib.hearth_paged_decode
    fn.restype = ctypes.c_int
    pointer, int64, int32, float32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    fn.argtypes = [pointer, pointer, pointer, pointer, int64, pointer, pointer, pointer]
    fn.argtypes += [int32] * 6 + [float32] * 2 + [int32] * 4
    lib.hearth_paged_set_pool.argtypes = [pointer]
    lib.hearth_paged_set_pool(thread_pool.pointer())


KERNEL = native_build.Kernel("paged_decode", log, "paged attention uses plain torch", _setup)


def available(level: str | None = None) -> bool:
    """Whether the kernel is built and loaded for instruction-set `level` (isa.py;
    None: the level loaded last; tries once per level)."""
    return KERNEL.load(level) is not None


def supports(query: torch.Tensor, key_cache: torch.Tensor, value_cache: torch.Tensor) -> bool:
    """Whether these tensors can go to the kernel (CPU, float32/bfloat16, contiguous caches,
    head sizes within its limits)."""
    return (
        query.device.type == "cpu"
        and query.dtype in _DTYPES
        and key_cache.dtype in _DTYPES
        and value_cache.dtype == key_cache.dtype
        and key_cache.is_contiguous()
        and value_cache.is_contiguous()
        and query.shape[-1] <= 512
        and value_cache.shape[-1] <= 512
        and query.shape[1] % key_cache.shape[2] == 0
        and query.shape[1] // key_cache.shape[2] <= 32
    )


def paged_decode(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    blocks: torch.Tensor,
    starts: torch.Tensor,
    ends: torch.Tensor,
    scale: float,
    softcap: float,
    threads: tuple[int, bool],
) -> torch.Tensor:
    """query: (S, H, Dk); caches: (num_blocks, block_size, Hkv, D); blocks: (S, B) int64;
    sequence s attends over keys [starts[s], ends[s]). softcap <= 0: none. -> (S, H, Dv).
    threads: (count, on the pool) (cpu/backend.py). A plain ctypes call, not a torch
    custom op: a custom op's first call imports dynamo (~150 MB)."""
    lib = KERNEL.lib
    assert lib is not None, "call supports() first"
    q = query.contiguous()
    tables = blocks.contiguous()
    lo, hi = starts.contiguous(), ends.contiguous()
    num_seqs, num_heads, dk = q.shape
    _, block_size, num_kv_heads, dv = value_cache.shape
    out = q.new_empty(num_seqs, num_heads, dv)
    status = lib.hearth_paged_decode(
        q.data_ptr(),
        key_cache.data_ptr(),
        value_cache.data_ptr(),
        tables.data_ptr(),
        tables.stride(0),
        lo.data_ptr(),
        hi.data_ptr(),
        out.data_ptr(),
        num_seqs,
        num_heads,
        num_kv_heads,
        dk,
        dv,
        block_size,
        scale,
        softcap,
        int(q.dtype == torch.bfloat16),
        int(key_cache.dtype == torch.bfloat16),
        *threads,
    )
    if status != 0:
        raise ValueError("paged_decode: head sizes over the kernel's limits")
    return out
