"""The kernel tests' instruction-set levels: every kernel library switched to one level's
build at once (the conftest's `isa_level` fixture, and tests that compare two roads)."""

from __future__ import annotations

from hearth.model.cpu import (
    decode_ops,
    decode_step,
    dense_matmul,
    isa,
    lora_delta,
    lowbit_matmul,
    paged_decode,
    prefill_attention,
)

KERNELS = (
    decode_ops, decode_step, dense_matmul, lora_delta, lowbit_matmul, paged_decode,
    prefill_attention,
)  # fmt: skip


def use_level(level: str | None) -> None:
    """Every kernel library switched to `level`'s build (None: the CPU's best)."""
    for kernel in KERNELS:
        kernel.available(level or isa.choose("auto"))
