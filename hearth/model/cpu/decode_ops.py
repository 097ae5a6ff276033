"""RMSNorm, SiLU gating, and rope + KV-cache write in one C pass each (decode_ops.c)
instead of 3-20 torch ops: on a one-token decode step of a small model every torch op costs
~5 us of dispatch and a temporary, and a layer has two norms, a gate and rope on q and k; on
a float32 prefill step the same ops stream (T, 1536) temporaries through memory. bfloat16:
the same roundings as the reference they stand in for (layers/ops.py: RMSNorm, SiLU gate,
rope + KV write); float32: within an ulp or two of it (one rounding per step, as torch's, but
sums in another order); both checked in tests/model/cpu/test_decode_ops.py.

Used only for contiguous CPU tensors of one dtype (bfloat16 or float32) and outside
autograd (nothing here has a backward: training keeps the torch code); no compiler:
`available()` is False and the torch code runs. Knows nothing of layers or models."""

from __future__ import annotations

import ctypes
import logging

import torch

from hearth.model.cpu import native_build

log = logging.getLogger(__name__)


def _setup(lib: ctypes.CDLL) -> None:
    pointer, int32, int64, float32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
    lib.hearth_rms_norm.restype = None
    lib.hearth_rms_norm.argtypes = [pointer, pointer, pointer, int64, int32, float32, int32, int32]
    lib.hearth_silu_mul.restype = None
    lib.hearth_silu_mul.argtypes = [pointer, pointer, int64, int32, int32]
    lib.hearth_rope_cache.restype = None
    lib.hearth_rope_cache.argtypes = [pointer] * 7 + [int64] + [int32] * 4
    lib.hearth_rms_norm_f32.restype = None
    lib.hearth_rms_norm_f32.argtypes = lib.hearth_rms_norm.argtypes
    lib.hearth_silu_mul_f32.restype = None
    lib.hearth_silu_mul_f32.argtypes = lib.hearth_silu_mul.argtypes
    lib.hearth_rope_cache_f32.restype = None
    lib.hearth_rope_cache_f32.argtypes = [*lib.hearth_rope_cache.argtypes, int32]


KERNEL = native_build.Kernel("decode_ops", log, "norms, gates and rope use plain torch", _setup)


def available(level: str | None = None) -> bool:
    """Whether the kernels are built and loaded for instruction-set `level` (isa.py;
    None: the level loaded last; tries once per level)."""
    return KERNEL.load(level) is not None


def applies(*tensors: torch.Tensor) -> bool:
    """Whether these tensors can go to the kernels here and now: all bfloat16 or all
    float32, contiguous, on the CPU, none needing a gradient."""
    dtype = tensors[0].dtype
    return (
        dtype in (torch.bfloat16, torch.float32)
        and all(t.dtype == dtype and t.device.type == "cpu" and t.is_contiguous() for t in tensors)
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
    )


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, unit_offset: bool) -> torch.Tensor:
    """x (..., D) normalized and scaled by weight (D,), both bf16 or both float32 -> (...,
    D) of that dtype."""
    lib = KERNEL.lib
    assert lib is not None, "call applies() first"
    out = torch.empty_like(x)
    dim = x.shape[-1]
    fn = lib.hearth_rms_norm_f32 if x.dtype == torch.float32 else lib.hearth_rms_norm
    fn(
        x.data_ptr(),
        weight.data_ptr(),
        out.data_ptr(),
        x.numel() // dim,
        dim,
        eps,
        int(unit_offset),
        torch.get_num_threads(),
    )
    return out


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """(..., 2 I) rows [gate | up] -> silu(gate) * up, (..., I); bf16 or float32."""
    lib = KERNEL.lib
    assert lib is not None, "call applies() first"
    inter = gate_up.shape[-1] // 2
    out = gate_up.new_empty(*gate_up.shape[:-1], inter)
    fn = lib.hearth_silu_mul_f32 if gate_up.dtype == torch.float32 else lib.hearth_silu_mul
    fn(
        gate_up.data_ptr(), out.data_ptr(), gate_up.numel() // (2 * inter), inter,
        torch.get_num_threads(),
    )  # fmt: skip
    return out


def rope_cache(
    qkv: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
    num_heads: int,
) -> torch.Tensor:
    """A step's fused projection qkv (T, (H + 2 Hkv) D): rope (halves rotated, cos/sin (T,
    R/2)) on q and k, k and v written to the caches (num_blocks, block_size, Hkv, D) at
    slot_mapping (T,) int64; returns the rotated q (T, H, D). All bf16 or all float32."""
    lib = KERNEL.lib
    assert lib is not None, "call applies() first"
    num_kv_heads, dim = key_cache.shape[2], key_cache.shape[3]
    tokens = qkv.shape[0]
    q = qkv.new_empty(tokens, num_heads, dim)
    slots = slot_mapping.contiguous()
    args = (
        qkv.data_ptr(), cos.data_ptr(), sin.data_ptr(), q.data_ptr(), key_cache.data_ptr(),
        value_cache.data_ptr(), slots.data_ptr(), tokens, num_heads, num_kv_heads, dim,
        2 * cos.shape[-1],
    )  # fmt: skip
    if qkv.dtype == torch.float32:
        lib.hearth_rope_cache_f32(*args, torch.get_num_threads())
    else:
        lib.hearth_rope_cache(*args)
    return q
