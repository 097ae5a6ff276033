"""The one work-sharing thread pool hearth's C kernels run on when hearth shares the CPU
(kernels/thread_pool.c: the caller and its helpers claim items from one counter, and the
caller never waits for a helper another process has descheduled; helpers spin ~200 us
after a job, then sleep). Where the cores are hearth's alone the kernels use OpenMP, whose
workers torch keeps spinning anyway.

The engine says which (`set_threads`); kernels ask `threads()` per call and hand
`pointer()` to their library once. Knows nothing of what the kernels compute."""

from __future__ import annotations

import ctypes

import torch

from hearth.model import native_build

_lib: ctypes.CDLL | None = None
# threads of the kernels (set_threads); None: OpenMP at torch's thread count
_threads: int | None = None
# whether they run on the pool (True) or an OpenMP team of `_threads`
_pooled = True


def set_threads(threads: int | None, pooled: bool = True) -> None:
    """Run the kernels with `threads` threads (the process's budget, whatever torch's count
    for the step) on the pool, or on an OpenMP team of that size (pooled False), or on
    OpenMP at torch's thread count (None). Measured on 2 cores, one-token decode steps of
    SmolLM2 Q4_1 with PASSIVE OpenMP workers: 9.0 ms of matmuls per token on 1 thread,
    15.7 ms on 2 OpenMP threads woken per region, 5.2 ms on the pool. With OpenMP's default
    spinning workers the pool's own spinning helpers fight them instead (float32 decode of
    SmolLM2, 1 / 16 / 30 sequences of 1,000 tokens: 44 / 106 / 160 ms a step on the pool,
    36 / 90 / 129 ms on OpenMP), hence `pooled`."""
    global _threads, _pooled
    _threads = threads
    _pooled = pooled


def threads() -> tuple[int, bool]:
    """(threads, pooled) for the next kernel call."""
    if _threads is not None:
        return _threads, _pooled
    return torch.get_num_threads(), False


def pointer() -> ctypes.c_void_p:
    """The address of `hearth_pool_run` (builds the pool on first use; raises like
    native_build.build when it cannot)."""
    global _lib
    if _lib is None:
        _lib = native_build.build("thread_pool")
    return ctypes.cast(_lib.hearth_pool_run, ctypes.c_void_p)
