"""The work-sharing pool (thread_pool.c) the C kernels run on where hearth shares
the CPU: the same results as OpenMP and as one thread, job after job, and from several
Python threads at once (a call that finds the pool busy runs on its caller alone)."""

from __future__ import annotations

import threading

import pytest
import torch

from hearth.model.cpu import lowbit_matmul as lowbit_kernel
from hearth.model.cpu import paged_decode as paged_kernel
from hearth.model.quant_pack import quantize_int4

pytestmark = [
    pytest.mark.skipif(not lowbit_kernel.available(), reason="low-bit kernel unavailable"),
    pytest.mark.usefixtures("isa_level"),  # each instruction-set level's build (conftest.py)
]


POOL = (2, True)  # (threads, on the pool)


def int4_matmul(x: torch.Tensor, *packed: torch.Tensor, threads: tuple[int, bool] = POOL):
    return lowbit_kernel.int4_matmul(x, *packed, False, threads)  # type: ignore[call-arg]


def _packed(rows: int = 512, cols: int = 256) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(rows)
    weight = quantize_int4(torch.randn(rows, cols))
    return lowbit_kernel.pack_int4(weight.q, weight.scales_and_zeros)


def test_pool_matches_openmp_and_one_thread() -> None:
    packed = _packed()
    x = torch.randn(5, 256).bfloat16()
    on_pool = int4_matmul(x, *packed)
    openmp = int4_matmul(x, *packed, threads=(2, False))
    serial = int4_matmul(x, *packed, threads=(1, False))
    assert torch.equal(on_pool, openmp) and torch.equal(on_pool, serial)


def test_many_jobs_in_a_row() -> None:
    # every job's items run once: a stale helper must never touch the next job
    packed = _packed(64, 64)
    xs = [torch.randn(1 + i % 4, 64).bfloat16() for i in range(300)]
    want = [int4_matmul(x, *packed) for x in xs[:4]]
    for i, x in enumerate(xs):
        got = int4_matmul(x, *packed)
        if i < 4:
            assert torch.equal(got, want[i])
        assert got.shape == (x.shape[0], 64) and bool(torch.isfinite(got.float()).all())


def test_callers_on_several_threads() -> None:
    packed = _packed(256, 128)
    xs = [torch.randn(3, 128).bfloat16() for _ in range(4)]
    want = [int4_matmul(x, *packed) for x in xs]
    errors: list[str] = []

    def worker(k: int) -> None:
        for _ in range(50):
            if not torch.equal(int4_matmul(xs[k], *packed), want[k]):
                errors.append(f"thread {k}")
                return

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.skipif(not paged_kernel.available(), reason="paged kernel unavailable")
def test_paged_kernel_on_the_pool() -> None:
    gen = torch.Generator().manual_seed(0)
    # enough keys (8 x ~450 x 2 heads) that the kernel splits the sequences over 2 threads
    key = torch.randn(260, 16, 2, 32, generator=gen)
    value = torch.randn(260, 16, 2, 32, generator=gen)
    query = torch.randn(8, 4, 32, generator=gen)
    blocks = torch.randperm(260, generator=gen)[:256].view(8, 32)
    starts = torch.tensor([0, 0, 100, 0, 0, 7, 0, 0])
    ends = torch.tensor([512, 300, 512, 490, 411, 512, 350, 509])
    args = (query, key, value, blocks, starts, ends, 0.2, 0.0)
    on_pool = paged_kernel.paged_decode(*args, POOL)
    assert torch.equal(on_pool, paged_kernel.paged_decode(*args, (2, False)))
