"""The work-sharing pool (kernels/thread_pool.c) the C kernels run on where hearth shares
the CPU: the same results as OpenMP and as one thread, job after job, and from several
Python threads at once (a call that finds the pool busy runs on its caller alone)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch

from hearth.model import cpu_pool, lowbit_kernel, paged_kernel
from hearth.model.quant_pack import quantize_int4

pytestmark = pytest.mark.skipif(
    not lowbit_kernel.available(), reason="low-bit kernel unavailable (no compiler or VNNI)"
)


@pytest.fixture
def pooled() -> Iterator[None]:
    cpu_pool.set_threads(2)
    try:
        yield
    finally:
        cpu_pool.set_threads(None)


def _packed(rows: int = 512, cols: int = 256) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(rows)
    weight = quantize_int4(torch.randn(rows, cols))
    return lowbit_kernel.pack_int4(weight.q, weight.scales_and_zeros)


def test_pool_matches_openmp_and_one_thread(pooled: None) -> None:
    packed = _packed()
    x = torch.randn(5, 256).bfloat16()
    on_pool = lowbit_kernel.int4_matmul(x, *packed)
    cpu_pool.set_threads(None)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        openmp = lowbit_kernel.int4_matmul(x, *packed)
        torch.set_num_threads(1)
        serial = lowbit_kernel.int4_matmul(x, *packed)
    finally:
        torch.set_num_threads(before)
    assert cpu_pool.threads() == (torch.get_num_threads(), False)
    assert torch.equal(on_pool, openmp) and torch.equal(on_pool, serial)


def test_many_jobs_in_a_row(pooled: None) -> None:
    # every job's items run once: a stale helper must never touch the next job
    packed = _packed(64, 64)
    xs = [torch.randn(1 + i % 4, 64).bfloat16() for i in range(300)]
    want = [lowbit_kernel.int4_matmul(x, *packed) for x in xs[:4]]
    for i, x in enumerate(xs):
        got = lowbit_kernel.int4_matmul(x, *packed)
        if i < 4:
            assert torch.equal(got, want[i])
        assert got.shape == (x.shape[0], 64) and bool(torch.isfinite(got.float()).all())


def test_callers_on_several_threads(pooled: None) -> None:
    packed = _packed(256, 128)
    xs = [torch.randn(3, 128).bfloat16() for _ in range(4)]
    want = [lowbit_kernel.int4_matmul(x, *packed) for x in xs]
    errors: list[str] = []

    def worker(k: int) -> None:
        for _ in range(50):
            if not torch.equal(lowbit_kernel.int4_matmul(xs[k], *packed), want[k]):
                errors.append(f"thread {k}")
                return

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.skipif(not paged_kernel.available(), reason="paged kernel unavailable")
def test_paged_kernel_on_the_pool(pooled: None) -> None:
    gen = torch.Generator().manual_seed(0)
    # enough keys (8 x ~450 x 2 heads) that the kernel splits the sequences over 2 threads
    key = torch.randn(260, 16, 2, 32, generator=gen)
    value = torch.randn(260, 16, 2, 32, generator=gen)
    query = torch.randn(8, 4, 32, generator=gen)
    blocks = torch.randperm(260, generator=gen)[:256].view(8, 32)
    starts = torch.tensor([0, 0, 100, 0, 0, 7, 0, 0])
    ends = torch.tensor([512, 300, 512, 490, 411, 512, 350, 509])
    args = (query, key, value, blocks, starts, ends, 0.2, 0.0)
    on_pool = paged_kernel.paged_decode(*args)
    cpu_pool.set_threads(None)
    assert torch.equal(on_pool, paged_kernel.paged_decode(*args))


def test_kernels_told_their_team() -> None:
    """threads(): the pool, an OpenMP team of the budget (OpenMP's workers spin), or
    OpenMP at torch's count."""
    try:
        cpu_pool.set_threads(2)
        assert cpu_pool.threads() == (2, True)
        cpu_pool.set_threads(2, pooled=False)
        assert cpu_pool.threads() == (2, False)
        cpu_pool.set_threads(None)
        assert cpu_pool.threads() == (torch.get_num_threads(), False)
    finally:
        cpu_pool.set_threads(None)
