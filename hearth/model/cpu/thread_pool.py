"""The one work-sharing thread pool hearth's C kernels run on when hearth shares the CPU
(thread_pool.c: the caller and its helpers claim items from one counter, and the caller
never waits for a helper another process has descheduled; helpers spin ~200 us after a
job, then sleep). Where the cores are hearth's alone the kernels use OpenMP, whose workers
torch keeps spinning anyway.

Each kernel library is handed `pointer()` once (at load); how many threads a call runs on,
and whether on the pool or OpenMP, is the backend's (cpu/backend.py `Threads`), passed per
call. Knows nothing of what the kernels compute."""

from __future__ import annotations

import ctypes
from functools import cache

from hearth.model.cpu import isa, native_build


@cache  # one pool per process: every kernel library, at every level, shares it
def _library() -> ctypes.CDLL:
    return native_build.build("thread_pool", isa.choose("auto") or "generic")


def pointer() -> ctypes.c_void_p:
    """The address of `hearth_pool_run` (builds the pool on first use; raises like
    native_build.build when it cannot)."""
    return ctypes.cast(_library().hearth_pool_run, ctypes.c_void_p)
