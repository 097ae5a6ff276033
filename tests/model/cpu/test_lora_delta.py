"""Serving LoRA's C update (lora_delta.py) against the PyTorch reference (`Ops.lora_add`),
on every instruction-set level's build: a batch whose rows use different slots of different
ranks, a slot the adapter leaves untargeted, and base rows, over a fused three-part
projection whose widths are not multiples of the kernel's 16 lanes or 128 columns."""

from __future__ import annotations

import pytest
import torch

from hearth.model.cpu import lora_delta
from hearth.model.layers.lora_slots import LoraBuffers
from hearth.model.layers.ops import REFERENCE

pytestmark = [
    pytest.mark.skipif(not lora_delta.available(), reason="kernel unavailable (no C compiler)"),
    pytest.mark.usefixtures("isa_level"),
]

MAX_RANK = 8
PARTS = ((0, 40), (40, 24), (64, 200))  # q, k, v of a 264-wide fused projection
IN = 37
RANKS = [8, 3, 0, 5]  # slot 2: an adapter that does not target this projection


def _buffers(dtype: torch.dtype) -> LoraBuffers:
    """Random slots in lora_slots.py's layout: rows past a slot's rank and B outside each
    part's columns zero."""
    generator = torch.Generator().manual_seed(0)
    cols = len(PARTS) * MAX_RANK
    a = torch.zeros(len(RANKS) * cols, IN)
    bt = torch.zeros(len(RANKS) * cols, sum(size for _, size in PARTS))
    for slot, rank in enumerate(RANKS):
        for i, (offset, size) in enumerate(PARTS):
            row = slot * cols + i * MAX_RANK
            a[row : row + rank] = torch.randn(rank, IN, generator=generator)
            bt[row : row + rank, offset : offset + size] = torch.randn(
                rank, size, generator=generator
            )
    ranks = torch.tensor(RANKS, dtype=torch.int32)
    return LoraBuffers(a.to(dtype), bt.to(dtype), ranks, MAX_RANK, PARTS)


SLOTS = torch.tensor([0, -1, 1, 3, 0, 2, 1, 0, -1, 3, 0, 0], dtype=torch.int64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("pooled", [False, True])
def test_kernel_gives_the_reference_update(dtype: torch.dtype, pooled: bool) -> None:
    lora = _buffers(dtype)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(len(SLOTS), IN, generator=generator).to(dtype)
    base = torch.randn(len(SLOTS), lora.bt.shape[1], generator=generator).to(dtype)
    want, got = base.clone(), base.clone()
    REFERENCE.lora_add(want, x, lora, SLOTS)
    lora_delta.add(got, x, lora, SLOTS, (2, pooled))
    untouched = (SLOTS < 0) | (SLOTS == 2)  # base rows; a slot not on this projection
    assert torch.equal(got[untouched], base[untouched])
    assert not torch.equal(got[~untouched], base[~untouched])
    if dtype == torch.float32:
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    else:  # the same float32 sums, each rounded once into a bf16 output: an ulp apart at most
        diff = (got.float() - want.float()).abs()
        assert (diff <= want.float().abs() * 2**-7 + 1e-6).all()


def test_same_bits_whatever_the_threads_or_rows_around() -> None:
    # the decode step and the layers' hook must agree to the bit: each row's update may not
    # depend on the thread count, the pool, or which other rows share the call
    lora = _buffers(torch.bfloat16)
    x = torch.randn(len(SLOTS), IN).bfloat16()
    base = torch.randn(len(SLOTS), lora.bt.shape[1]).bfloat16()
    outs = []
    for threads in [(1, False), (2, False), (2, True)]:
        out = base.clone()
        lora_delta.add(out, x, lora, SLOTS, threads)
        outs.append(out)
    assert all(torch.equal(o, outs[0]) for o in outs[1:])
    alone = base[3:4].clone()
    lora_delta.add(alone, x[3:4].clone(), lora, SLOTS[3:4].clone(), (1, False))
    assert torch.equal(alone, outs[0][3:4])
