"""The C float32 few-row matmul (dense_matmul.c) against float64 products: every row count
it takes, K and N that are not multiples of its tiles, a bias, the work-sharing pool and
OpenMP; and the CPU backend sends few-row calls to it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hearth.model.cpu import dense_matmul as dense_kernel
from hearth.model.cpu.backend import CpuBackend

pytestmark = pytest.mark.skipif(not dense_kernel.available(), reason="no C compiler or AVX-512F")
OPENMP = (1, False)  # (threads, on the pool): OpenMP at one thread


def matmul(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    return dense_kernel.matmul(x, w, bias, OPENMP)


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8, 13, 16])
@pytest.mark.parametrize(("n", "k"), [(960, 576), (37, 50), (16, 1536), (5, 15)])
def test_matches_float64(rows: int, n: int, k: int) -> None:
    gen = torch.Generator().manual_seed(rows * 1000 + n + k)
    x = torch.randn(rows, k, generator=gen)
    w = torch.randn(n, k, generator=gen)
    b = torch.randn(n, generator=gen)
    for bias in (None, b):
        got = matmul(x, w, bias)
        want = F.linear(x.double(), w.double(), None if bias is None else bias.double())
        assert got.shape == (rows, n) and got.dtype == torch.float32
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("pooled", [False, True])
def test_pool_and_openmp_agree(pooled: bool) -> None:
    x = torch.randn(6, 576)
    w = torch.randn(3072, 576)
    got = dense_kernel.matmul(x, w, None, (2, pooled))
    # each output is one thread's sum in a fixed order: the split changes nothing
    assert torch.equal(got, matmul(x, w))
    torch.testing.assert_close(got.double(), x.double() @ w.double().T, rtol=1e-5, atol=1e-4)


def test_non_contiguous_inputs_and_bad_shapes() -> None:
    x = torch.randn(64, 3).T  # (3, 64), not contiguous
    w = torch.randn(64, 20).T  # (20, 64)
    torch.testing.assert_close(matmul(x, w), x @ w.T, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="columns"):
        matmul(torch.randn(2, 8), torch.randn(4, 9))
    assert matmul(torch.randn(0, 8), torch.randn(4, 8)).shape == (0, 4)


def test_the_backend_takes_it_for_few_rows() -> None:
    backend = CpuBackend()
    w = torch.randn(48, 32)
    few = torch.randn(dense_kernel.MAX_ROWS, 32)
    with torch.inference_mode():
        got = backend.linear(few, w)
    assert torch.equal(got, dense_kernel.matmul(few, w, None, backend.threads()))
