"""Serving LoRA's per-row updates of a projection in one C call (lora_delta.c) instead of
the slot-by-slot torch matmuls: rows grouped by adapter slot, each slot's A and B read
once, the base rows skipped. The whole decode step (decode_step.c) includes the same
function, so a step with adapters is the same bits on either road. Measured on SmolLM2-135M
Q4_1, 16 decode rows over 4 rank-16 adapters: see docs/decisions/lora-serving.md.

`view` turns a projection's slot buffers (layers/lora_slots.py `LoraBuffers`) into the C
struct once; `add` runs it. Used for contiguous CPU tensors outside autograd only (the
backend checks `applies`). Knows nothing of layers or adapters' files."""

from __future__ import annotations

import ctypes
import logging
from typing import TYPE_CHECKING

import torch

from hearth.model.cpu import native_build, thread_pool

if TYPE_CHECKING:
    from hearth.model.layers.lora_slots import LoraBuffers

log = logging.getLogger(__name__)

MAX_PARTS = 3  # lora_delta.c LORA_MAX_PARTS: q, k, v


class Proj(ctypes.Structure):
    """lora_delta.c's lora_proj_t: pointers into a LoraBuffers' tensors."""

    _fields_ = [
        ("a", ctypes.c_void_p),
        ("bt", ctypes.c_void_p),
        ("ranks", ctypes.c_void_p),
        ("w_bf16", ctypes.c_int),
        ("slots", ctypes.c_int),
        ("R", ctypes.c_int),
        ("parts", ctypes.c_int),
        ("K", ctypes.c_int),
        ("N", ctypes.c_int),
        ("offset", ctypes.c_int * MAX_PARTS),
        ("size", ctypes.c_int * MAX_PARTS),
    ]


def _setup(lib: ctypes.CDLL) -> None:
    pointer, int32 = ctypes.c_void_p, ctypes.c_int
    fn = lib.hearth_lora_add
    fn.restype = int32
    fn.argtypes = [ctypes.POINTER(Proj), pointer, int32, pointer, int32, int32, pointer]
    fn.argtypes += [int32, int32]
    lib.hearth_lora_set_pool.argtypes = [pointer]
    lib.hearth_lora_set_pool(thread_pool.pointer())


KERNEL = native_build.Kernel("lora_delta", log, "LoRA updates use torch matmuls", _setup)


def available(level: str | None = None) -> bool:
    """Whether the kernel is built and loaded for `level` (isa.py; None: the level loaded
    last)."""
    return KERNEL.load(level) is not None


def applies(out: torch.Tensor, x: torch.Tensor) -> bool:
    """Whether a projection's input x (T, K) and output out (T, N) can go to the kernel:
    CPU, contiguous, bfloat16 or float32, no gradient wanted."""
    return all(
        t.device.type == "cpu"
        and t.dim() == 2
        and t.is_contiguous()
        and t.dtype in (torch.bfloat16, torch.float32)
        and not (torch.is_grad_enabled() and t.requires_grad)
        for t in (out, x)
    )


def view(lora: LoraBuffers) -> Proj:
    """The C struct over `lora`'s tensors, made once and kept on it (the tensors are written
    in place by every load, never replaced)."""
    if lora.kernel_view is None:
        assert len(lora.parts) <= MAX_PARTS and lora.ranks.dtype == torch.int32
        assert lora.a.dtype == lora.bt.dtype and lora.a.dtype in (torch.float32, torch.bfloat16)
        offsets = [offset for offset, _ in lora.parts] + [0] * (MAX_PARTS - len(lora.parts))
        sizes = [size for _, size in lora.parts] + [0] * (MAX_PARTS - len(lora.parts))
        lora.kernel_view = Proj(
            lora.a.data_ptr(), lora.bt.data_ptr(), lora.ranks.data_ptr(),
            int(lora.a.dtype == torch.bfloat16), lora.ranks.numel(),
            lora.max_rank, len(lora.parts), lora.a.shape[1], lora.bt.shape[1],
            (ctypes.c_int * MAX_PARTS)(*offsets), (ctypes.c_int * MAX_PARTS)(*sizes),
        )  # fmt: skip
    view: Proj = lora.kernel_view
    return view


def add(
    out: torch.Tensor,
    x: torch.Tensor,
    lora: LoraBuffers,
    token_slots: torch.Tensor,
    threads: tuple[int, bool],
) -> None:
    """out (T, N) += each row's update (token_slots (T,) int64, -1: none), in place; x (T,
    K). threads: (count, on the pool)."""
    lib = KERNEL.lib
    assert lib is not None, "call available() first"
    slots = token_slots.contiguous()
    status = lib.hearth_lora_add(
        ctypes.byref(view(lora)), x.data_ptr(), int(x.dtype == torch.bfloat16), out.data_ptr(),
        int(out.dtype == torch.bfloat16), out.shape[0], slots.data_ptr(), *threads,
    )  # fmt: skip
    if status != 0:
        raise RuntimeError(f"LoRA kernel refused the update (status {status})")
