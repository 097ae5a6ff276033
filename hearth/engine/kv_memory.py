"""Giving idle KV-cache memory back to the operating system. The pool is allocated once
(zeroed, so untouched pages cost nothing), but every block a request ever wrote stays
resident: a server's RSS climbs to the whole pool after a few hundred requests and stays
there. When the engine goes idle it asks, with madvise(MADV_DONTNEED), for the pages of
free blocks to be dropped; the next touch maps fresh zero pages, which is what the pool
held at the start. Linux only (elsewhere nothing happens). Knows nothing of requests."""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import sys
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

import torch

MADV_DONTNEED = 4  # <sys/mman.h> on Linux


@cache
def _madvise() -> Any:
    """libc's madvise, or None where it cannot give pages back (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fn = libc.madvise
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _runs(block_ids: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted ids as [start, end) runs of consecutive ids."""
    runs: list[tuple[int, int]] = []
    for b in sorted(block_ids):
        if runs and runs[-1][1] == b:
            runs[-1] = (runs[-1][0], b + 1)
        else:
            runs.append((b, b + 1))
    return runs


def release_blocks(kv_caches: Sequence[Any], block_ids: Iterable[int]) -> int:
    """Drop the resident pages of these blocks in every layer's key and value tensors
    ((num_blocks, block_size, heads, dim), contiguous, CPU); only whole pages inside a run
    of blocks go. Their contents read as zeros afterwards. Returns the bytes advised."""
    madvise = _madvise()
    if madvise is None:
        return 0
    runs = _runs(block_ids)
    page = mmap.PAGESIZE
    released = 0
    for layer in kv_caches:
        for tensor in (getattr(layer, "key", None), getattr(layer, "value", None)):
            if not isinstance(tensor, torch.Tensor) or tensor.device.type != "cpu":
                continue
            if not tensor.is_contiguous():
                continue
            base = tensor.data_ptr()
            per_block = tensor.stride(0) * tensor.element_size()
            for first, end in runs:
                start = -(-(base + first * per_block) // page) * page
                stop = (base + end * per_block) // page * page
                if stop > start and madvise(start, stop - start, MADV_DONTNEED) == 0:
                    released += stop - start
    return released


def resident_bytes() -> int:
    """This process's resident set size (VmRSS), 0 where /proc is missing."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
