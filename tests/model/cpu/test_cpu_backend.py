"""CpuBackend: float32 CPU projections through oneDNN (or, for few rows, the C dense kernel)
give F.linear's products (up to the summation order), run oneDNN's op when they should and
F.linear when autograd, another dtype or a switched-off kernel says so; kernels in
`disabled` are never offered; the threads it tells the kernels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from hearth.model.cpu import dense_matmul
from hearth.model.cpu.backend import KERNEL_NAMES, CpuBackend
from hearth.model.layers.linear import Linear

BACKEND = CpuBackend()
pytestmark = pytest.mark.skipif(not BACKEND.onednn, reason="torch without oneDNN")


def _ops(fn) -> set[str]:  # type: ignore[no-untyped-def]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


@pytest.mark.parametrize("rows", [1, 5, 64, 300])
@pytest.mark.parametrize("bias", [False, True])
def test_matches_f_linear(rows: int, bias: bool) -> None:
    gen = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, 96, generator=gen)
    w = torch.randn(200, 96, generator=gen)
    b = torch.randn(200, generator=gen) if bias else None
    with torch.inference_mode():
        got = BACKEND.linear(x, w, b)
        onednn = rows > dense_matmul.MAX_ROWS or not BACKEND.dense
        assert ("mkldnn::_linear_pointwise" in _ops(lambda: BACKEND.linear(x, w, b))) == onednn
    want = F.linear(x.double(), w.double(), None if b is None else b.double())
    assert got.dtype == torch.float32 and got.shape == (rows, 200)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)


def test_leading_dims_and_non_contiguous_input() -> None:
    x = torch.randn(3, 40, 64).transpose(0, 1)  # (40, 3, 64), not contiguous
    w = torch.randn(32, 64)
    with torch.no_grad():
        got = BACKEND.linear(x, w)
    assert got.shape == (40, 3, 32)
    torch.testing.assert_close(got, F.linear(x, w), rtol=1e-5, atol=1e-4)


def test_autograd_and_other_dtypes_take_f_linear() -> None:
    w = torch.randn(16, 8, requires_grad=True)
    x = torch.randn(40, 8)
    y = BACKEND.linear(x, w)
    y.sum().backward()  # the F.linear road keeps the graph
    assert w.grad is not None
    with torch.no_grad():
        assert "mkldnn::_linear_pointwise" not in _ops(
            lambda: BACKEND.linear(x.bfloat16(), w.detach().bfloat16())
        )
        assert "mkldnn::_linear_pointwise" in _ops(lambda: BACKEND.linear(x, w))


def test_linear_module_uses_it() -> None:
    layer = Linear(24, 10, bias=True, ops=BACKEND)
    torch.nn.init.normal_(layer.weight)
    assert layer.bias is not None
    torch.nn.init.normal_(layer.bias)
    x = torch.randn(40, 24)  # more rows than the dense kernel takes
    with torch.inference_mode():
        assert "mkldnn::_linear_pointwise" in _ops(lambda: layer(x))
        assert torch.equal(layer(x), BACKEND.linear(x, layer.weight, layer.bias))


def test_disabled_kernels_are_not_offered() -> None:
    off = CpuBackend(disabled=KERNEL_NAMES)
    assert off.enabled() == [] and off.lowbit is None and not off.step
    x, w = torch.randn(40, 24), torch.randn(10, 24)
    with torch.inference_mode():
        assert "mkldnn::_linear_pointwise" not in _ops(lambda: off.linear(x, w))
        torch.testing.assert_close(off.linear(x, w), F.linear(x, w))
    assert "onednn" in BACKEND.enabled()
    assert CpuBackend(disabled=("onednn",)).enabled() == [
        k for k in BACKEND.enabled() if k != "onednn"
    ]


def test_describes_itself_in_one_line() -> None:
    line = BACKEND.describe()
    assert line.startswith(f"kernels: {BACKEND.name} (") and "\n" not in line
    assert all(name in line for name in BACKEND.enabled())


def test_kernels_told_their_team() -> None:
    """threads(): the pool, an OpenMP team of the budget (OpenMP's workers spin), or
    OpenMP at torch's count."""
    backend = CpuBackend()
    assert backend.threads() == (torch.get_num_threads(), False)
    backend.set_threads(2)
    assert backend.threads() == (2, True)
    backend.set_threads(2, pooled=False)
    assert backend.threads() == (2, False)
    backend.set_threads(None)
    assert backend.threads() == (torch.get_num_threads(), False)
