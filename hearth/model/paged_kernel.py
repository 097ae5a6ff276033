"""The C paged-decode attention kernel (kernels/paged_decode.c): built at first use with the
system C compiler, cached per source and CPU, loaded with ctypes and registered as the torch
op `hearth::paged_decode` (so a compiled decode step calls it as one opaque node).

Why a kernel: a decode step's attention in plain torch gathers every sequence's K/V through
the block table into a padded copy (written, then read again by SDPA); with 32 sequences of
~1,000 tokens that was ~180 ms of a step on 2 cores. The kernel reads each cached key and
value once, in place, and stops at each sequence's own length.

No compiler, a failed build, or HEARTH_PAGED_KERNEL=0: `available()` is False and attention
takes the torch road (same results). Knows nothing of models or the engine."""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable

import torch

from hearth.model import cpu_pool, native_build

log = logging.getLogger(__name__)

_DTYPES = {torch.float32: 0, torch.bfloat16: 1}


def _setup(lib: ctypes.CDLL) -> None:
    fn = lib.hearth_paged_decode
    fn.restype = ctypes.c_int
    pointer, int64, int32, float32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    fn.argtypes = [pointer, pointer, pointer, pointer, int64, pointer, pointer, pointer]
    fn.argtypes += [int32] * 6 + [float32] * 2 + [int32] * 4
    lib.hearth_paged_set_pool.argtypes = [pointer]
    lib.hearth_paged_set_pool(cpu_pool.pointer())


KERNEL = native_build.Kernel(
    "paged_decode", "HEARTH_PAGED_KERNEL", log, "paged attention uses plain torch", _setup
)


def available() -> bool:
    """Whether the kernel is built and loaded (tries once per process)."""
    return KERNEL.load() is not None


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
        and available()
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
) -> torch.Tensor:
    """query: (S, H, Dk); caches: (num_blocks, block_size, Hkv, D); blocks: (S, B) int64;
    sequence s attends over keys [starts[s], ends[s]). softcap <= 0: none. -> (S, H, Dv).
    A plain call: eager steps pay no op dispatch (a torch custom op's first call imports
    dynamo, ~150 MB); compiled steps call `compiled_op()` instead."""
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
        *cpu_pool.threads(),
    )
    if status != 0:
        raise ValueError("paged_decode: head sizes over the kernel's limits")
    return out


_op: Callable[..., torch.Tensor] | None = None


def compiled_op() -> Callable[..., torch.Tensor]:
    """`paged_decode` as the torch op `hearth::paged_decode`, which a torch.compile graph
    keeps as one opaque call (registered on first use, before tracing starts)."""
    global _op
    if _op is None:
        op = torch.library.custom_op("hearth::paged_decode", mutates_args=())(paged_decode)

        @op.register_fake
        def _(query, key_cache, value_cache, blocks, starts, ends, scale, softcap):  # type: ignore[no-untyped-def]
            num_seqs, num_heads, _ = query.shape
            return query.new_empty(num_seqs, num_heads, value_cache.shape[-1])

        _op = op
    return _op
