"""The C float32 few-row matmul (kernels/dense_matmul.c) against float64 products: every
row count it takes, K and N that are not multiples of its tiles, a bias, the work-sharing
pool and OpenMP; and cpu_linear sends few-row calls to it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from hearth.model import cpu_linear, cpu_pool, dense_kernel

pytestmark = pytest.mark.skipif(not dense_kernel.available(), reason="no C compiler or AVX-512F")


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8, 13, 16])
@pytest.mark.parametrize(("n", "k"), [(960, 576), (37, 50), (16, 1536), (5, 15)])
def test_matches_float64(rows: int, n: int, k: int) -> None:
    gen = torch.Generator().manual_seed(rows * 1000 + n + k)
    x = torch.randn(rows, k, generator=gen)
    w = torch.randn(n, k, generator=gen)
    b = torch.randn(n, generator=gen)
    for bias in (None, b):
        got = dense_kernel.matmul(x, w, bias)
        want = F.linear(x.double(), w.double(), None if bias is None else bias.double())
        assert got.shape == (rows, n) and got.dtype == torch.float32
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("pooled", [False, True])
def test_pool_and_openmp_agree(pooled: bool) -> None:
    x = torch.randn(6, 576)
    w = torch.randn(3072, 576)
    cpu_pool.set_threads(2 if pooled else None)
    try:
        got = dense_kernel.matmul(x, w)
    finally:
        cpu_pool.set_threads(None)
    # each output is one thread's sum in a fixed order: the split changes nothing
    assert torch.equal(got, dense_kernel.matmul(x, w))
    torch.testing.assert_close(got.double(), x.double() @ w.double().T, rtol=1e-5, atol=1e-4)


def test_non_contiguous_inputs_and_bad_shapes() -> None:
    x = torch.randn(64, 3).T  # (3, 64), not contiguous
    w = torch.randn(64, 20).T  # (20, 64)
    torch.testing.assert_close(dense_kernel.matmul(x, w), x @ w.T, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="columns"):
        dense_kernel.matmul(torch.randn(2, 8), torch.randn(4, 9))
    assert dense_kernel.matmul(torch.randn(0, 8), torch.randn(4, 8)).shape == (0, 4)


def test_cpu_linear_takes_it_for_few_rows() -> None:
    w = torch.randn(48, 32)
    few = torch.randn(dense_kernel.MAX_ROWS, 32)
    with torch.inference_mode():
        got = cpu_linear.linear(few, w)
    assert torch.equal(got, dense_kernel.matmul(few, w))


def test_switch_off() -> None:
    code = "from hearth.model import dense_kernel; print(dense_kernel.available())"
    env = {**os.environ, dense_kernel.ENV: "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
