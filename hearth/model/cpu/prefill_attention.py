"""The C causal float32 prefill attention (prefill_attention.c): one sequence's new
tokens over its whole context (cached prefix included), visiting only the key blocks each
query tile can see. On the 2-core AVX-512 machine SDPA's CPU flash kernel runs SmolLM2's
prefill shapes at 50-125 GFLOP/s (its masked road, taken whenever a prefix is cached,
skips nothing); attention was a quarter of hearth eval's gsm8k prefill time.

Takes float32, no window / chunk / soft-capping, equal key and value widths that are a
multiple of 64 up to 256, query groups up to 8 (`supports`); everything else stays on SDPA.
Built at first use like the other kernels (native_build.py); no compiler or no AVX-512F:
`available()` is False. Knows nothing of layers or models."""

from __future__ import annotations

import ctypes
import logging

import torch

from hearth.model.cpu import native_build

log = logging.getLogger(__name__)


def _setup(lib: ctypes.CDLL) -> None:
    pointer, int32, float32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
    fn = lib.hearth_prefill_attention
    fn.restype = int32
    fn.argtypes = [pointer] * 4 + [int32] * 5 + [float32, int32]


KERNEL = native_build.Kernel(
    "prefill_attention", log, "prefill attention uses SDPA", _setup,
    probe="hearth_prefill_available", needs="AVX-512F",
)  # fmt: skip


def available(level: str | None = None) -> bool:
    """Whether the kernel is built and loaded for instruction-set `level` (isa.py;
    None: the level loaded last) with its AVX-512F road (tries once per level)."""
    return KERNEL.load(level) is not None


def supports(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> bool:
    """Whether (L, H, D) queries over (C, Hkv, D) keys and values can go to the kernel."""
    dim = query.shape[-1]
    heads, kv_heads = query.shape[1], key.shape[1]
    return (
        query.device.type == "cpu"
        and query.dtype == key.dtype == value.dtype == torch.float32
        and key.shape[-1] == value.shape[-1] == dim
        and dim % 64 == 0
        and dim <= 256
        and heads % kv_heads == 0
        and heads // kv_heads <= 8
        and not (torch.is_grad_enabled() and query.requires_grad)
    )


def causal_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float
) -> torch.Tensor:
    """query (L, H, D): the last L positions of a context whose keys and values are (C,
    Hkv, D); each query sees the keys up to its own position. Returns (L, H, D). Call
    `supports` first."""
    lib = KERNEL.lib
    assert lib is not None, "call supports() first"
    length, heads, dim = query.shape
    context, kv_heads = key.shape[0], key.shape[1]
    q = query.contiguous()
    kt = key.permute(1, 2, 0).contiguous()  # (Hkv, D, C): a key block's rows are vectors
    v = value.contiguous()
    out = torch.empty(length, heads, dim, dtype=torch.float32)
    # OpenMP at torch's thread count, the team of the step's GEMMs (the kernel's header)
    status = lib.hearth_prefill_attention(
        q.data_ptr(), kt.data_ptr(), v.data_ptr(), out.data_ptr(), length, context, heads,
        kv_heads, dim, scale, torch.get_num_threads(),
    )  # fmt: skip
    if status != 0:
        raise ValueError(
            f"prefill attention: {length} queries x {heads} heads over {context} keys x "
            f"{kv_heads} heads, dim {dim}, refused (status {status})"
        )
    return out
