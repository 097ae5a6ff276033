"""cpu_linear: float32 CPU projections through oneDNN (or, for few rows, the C dense kernel)
give F.linear's products (up to the summation order), run oneDNN's op when they should and
F.linear when autograd, another dtype or the switch says so."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from hearth.model import cpu_linear, dense_kernel
from hearth.model.layers.linear import Linear

pytestmark = pytest.mark.skipif(not cpu_linear._AVAILABLE, reason="torch without oneDNN")


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
        got = cpu_linear.linear(x, w, b)
        onednn = rows > dense_kernel.MAX_ROWS or not dense_kernel.available()
        assert ("mkldnn::_linear_pointwise" in _ops(lambda: cpu_linear.linear(x, w, b))) == onednn
    want = F.linear(x.double(), w.double(), None if b is None else b.double())
    assert got.dtype == torch.float32 and got.shape == (rows, 200)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)


def test_leading_dims_and_non_contiguous_input() -> None:
    x = torch.randn(3, 40, 64).transpose(0, 1)  # (40, 3, 64), not contiguous
    w = torch.randn(32, 64)
    with torch.no_grad():
        got = cpu_linear.linear(x, w)
    assert got.shape == (40, 3, 32)
    torch.testing.assert_close(got, F.linear(x, w), rtol=1e-5, atol=1e-4)


def test_autograd_and_other_dtypes_take_f_linear() -> None:
    w = torch.randn(16, 8, requires_grad=True)
    x = torch.randn(4, 8)
    assert not cpu_linear.applies(x, w)
    y = cpu_linear.linear(x, w)
    y.sum().backward()  # the F.linear road keeps the graph
    assert w.grad is not None
    assert not cpu_linear.applies(x.bfloat16(), w.detach().bfloat16())
    assert not cpu_linear.applies(torch.randn(8), w.detach())  # a vector: F.linear
    with torch.no_grad():
        assert cpu_linear.applies(x, w)  # no graph to record: oneDNN


def test_linear_module_uses_it() -> None:
    layer = Linear(24, 10, bias=True)
    torch.nn.init.normal_(layer.weight)
    assert layer.bias is not None
    torch.nn.init.normal_(layer.bias)
    x = torch.randn(40, 24)  # more rows than the dense kernel takes
    with torch.inference_mode():
        assert "mkldnn::_linear_pointwise" in _ops(lambda: layer(x))
        assert torch.equal(layer(x), cpu_linear.linear(x, layer.weight, layer.bias))


def test_switch_off() -> None:
    code = "from hearth.model import cpu_linear; print(cpu_linear._AVAILABLE)"
    env = {**os.environ, cpu_linear.ENV: "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
