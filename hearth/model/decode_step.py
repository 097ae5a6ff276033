"""A decode-only step of a plain Llama-family decoder as one C call (kernels/decode_step.c):
every layer's norms, projections, rope, cache write, paged attention, gated MLP and residual
adds, then the final norm, with the very functions the per-op C road calls one at a time.

Why: with the low-bit kernels a SmolLM2-135M token's matmuls take ~5 ms on 2 cores, and the
~15 Python-dispatched calls per layer (30 layers) took about as long again. The step's
result is bit-identical to the eager road (tests/model/test_decode_step.py).

Which models: every layer a rope attention without q/k norms, fused q/k/v and gate/up
projections in the low-bit kernel's int4/int8 layout without biases, SiLU, no soft-capping
or sandwich norms, bfloat16 activations and caches (`plan` returns None otherwise, and the
layers run as modules). HEARTH_DECODE_STEP=0 turns it off. Knows nothing of the engine."""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from hearth.model import cpu_pool, lowbit_kernel, native_build, paged_kernel
from hearth.model.attention import DecodeInputs, MaskKey
from hearth.model.attention_layer import Attention
from hearth.model.kv_cache import KVCache
from hearth.model.mlp import GatedMLP
from hearth.model.norms import RMSNorm
from hearth.model.quant import Int4Linear, Int8Linear

log = logging.getLogger(__name__)

ENV = "HEARTH_DECODE_STEP"


class _Linear(ctypes.Structure):
    _fields_ = [
        ("int8", ctypes.c_int),
        ("N", ctypes.c_int),
        ("K", ctypes.c_int),
        ("w0", ctypes.c_void_p),
        ("w1", ctypes.c_void_p),
        ("w2", ctypes.c_void_p),
    ]


class _Layer(ctypes.Structure):
    _fields_ = [
        ("input_norm", ctypes.c_void_p),
        ("post_norm", ctypes.c_void_p),
        ("qkv", _Linear),
        ("o", _Linear),
        ("gate_up", _Linear),
        ("down", _Linear),
        ("kcache", ctypes.c_void_p),
        ("vcache", ctypes.c_void_p),
        ("rope", ctypes.c_int),
        ("mask", ctypes.c_int),
        ("scale", ctypes.c_float),
    ]


class _Model(ctypes.Structure):
    _fields_ = [
        ("layers", ctypes.c_int),
        ("hidden", ctypes.c_int),
        ("H", ctypes.c_int),
        ("Hkv", ctypes.c_int),
        ("D", ctypes.c_int),
        ("R", ctypes.c_int),
        ("inter", ctypes.c_int),
        ("bs", ctypes.c_int),
        ("eps", ctypes.c_float),
        ("layer", ctypes.POINTER(_Layer)),
        ("final_norm", ctypes.c_void_p),
    ]


def _setup(lib: ctypes.CDLL) -> None:
    pointer, int32, int64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
    fn = lib.hearth_decode_step
    fn.restype = int32
    fn.argtypes = [ctypes.POINTER(_Model), pointer, pointer, int32, pointer, pointer, pointer]
    fn.argtypes += [pointer, int64, pointer, pointer, int32, int32, int32]
    lib.hearth_step_set_pool.argtypes = [pointer]
    lib.hearth_step_set_pool(cpu_pool.pointer())


KERNEL = native_build.Kernel("decode_step", ENV, log, "decode layers run one op at a time", _setup)


def available() -> bool:
    """Whether the kernel is built and loaded and the CPU has what the matmuls need (the
    step is built from the low-bit and paged kernels)."""
    return lowbit_kernel.available() and paged_kernel.available() and KERNEL.load() is not None


@dataclass
class StepPlan:
    """One model's layers as the C step reads them, for one set of KV caches: raw pointers,
    valid while the modules and those caches live (the decoder uses a plan only for the very
    caches it was made for, and holds them weakly: a plan must not keep an engine's dropped
    KV pool in memory)."""

    model: _Model
    layers: ctypes.Array[_Layer]
    num_ropes: int
    mask_keys: list[MaskKey]
    max_rows: int  # steps of this many sequences or more run the modules (their dense road)


def _linear(module: Any, max_rows: list[int]) -> _Linear | None:
    """A projection as the step reads it: the low-bit kernel's layout, no bias, bf16 out.
    max_rows[0] is lowered to the row count from which the module itself would not run it."""
    if module is None or module.bias is not None or module.out_float32:
        return None
    n, k = module.out_features, module.in_features
    if type(module) is Int4Linear and module.lowbit:
        # from dense_min_rows rows on the module takes another road: the plan says so
        if module.dense_min_rows < max_rows[0]:
            max_rows[0] = module.dense_min_rows
        ptrs = module.codes.data_ptr(), module.scales.data_ptr(), module.mins.data_ptr()
        return _Linear(0, n, k, *ptrs)
    corr = module.int8.corr if type(module) is Int8Linear else None
    if corr is not None and module.int8.lowbit:
        t = module.int8
        return _Linear(1, n, k, t.codes.data_ptr(), corr.data_ptr(), t.scales.data_ptr())
    return None


def _norm(module: Any, eps: float) -> int | None:
    ok = (
        type(module) is RMSNorm
        and not module.unit_offset
        and module.eps == eps
        and module.weight.dtype == torch.bfloat16
        and module.weight.is_contiguous()
    )
    return module.weight.data_ptr() if ok else None


def plan(
    modules: Iterable[Any],
    final_norm: Any,
    caches: list[KVCache],
    rope_index: list[int],
    mask_keys: list[MaskKey],
) -> StepPlan | None:
    """The C step's view of these layers, or None when any of them does not fit it.
    rope_index[i]: which of the step's rope tables layer i takes; mask_keys: the step's
    key-range rules in the order `step` is handed their starts."""
    layers = list(modules)
    if not available() or not isinstance(final_norm, RMSNorm) or len(caches) != len(layers):
        return None
    eps = final_norm.eps
    final = _norm(final_norm, eps)
    specs = []
    max_rows = [1 << 62]
    first = layers[0].self_attn if len(layers) else None
    if final is None or not isinstance(first, Attention):
        return None
    shape = (first.num_heads, first.num_kv_heads, first.head_dim)
    for i, layer in enumerate(layers):
        attn, mlp, cache = layer.self_attn, layer.mlp, caches[i]
        if not (
            type(attn) is Attention
            and (attn.num_heads, attn.num_kv_heads, attn.head_dim) == shape
            and attn._fused_decode
            and attn.qkv_proj is not None
            and attn.softcap is None
            and not layer.sandwich_norm
            and type(mlp) is GatedMLP
            and mlp.silu
            and mlp.gate_up_proj is not None
            and cache.key.dtype == cache.value.dtype == torch.bfloat16
            and cache.key.is_contiguous()
            and cache.value.is_contiguous()
            and cache.value.shape[-1] == attn.head_dim
            and cache.block_size == caches[0].block_size
        ):
            return None
        probe = torch.empty(1, attn.num_heads, attn.head_dim, dtype=torch.bfloat16)
        if not paged_kernel.supports(probe, cache.key, cache.value):
            return None
        linears = [
            _linear(m, max_rows)
            for m in (attn.qkv_proj, attn.o_proj, mlp.gate_up_proj, mlp.down_proj)
        ]
        norms = [_norm(layer.input_layernorm, eps), _norm(layer.post_attention_layernorm, eps)]
        if any(x is None for x in linears) or any(x is None for x in norms):
            return None
        qkv, o, gate_up, down = linears
        assert qkv is not None and o is not None and gate_up is not None and down is not None
        key = (attn.sliding_window, attn.chunk)
        specs.append(
            _Layer(norms[0], norms[1], qkv, o, gate_up, down, cache.key.data_ptr(),
                   cache.value.data_ptr(), rope_index[i], mask_keys.index(key), attn.scale)
        )  # fmt: skip
    heads, kv_heads, dim = shape
    inter = int(layers[0].mlp.intermediate_size)
    hidden = int(layers[0].input_layernorm.weight.shape[0])
    wants = [((heads + 2 * kv_heads) * dim, hidden), (hidden, heads * dim)]
    wants += [(2 * inter, hidden), (hidden, inter)]
    for spec in specs:  # every layer the one shape the step's scratch is cut for
        shapes = [(w.N, w.K) for w in (spec.qkv, spec.o, spec.gate_up, spec.down)]
        if shapes != wants:
            return None
    array = (_Layer * len(specs))(*specs)
    model = _Model(len(specs), hidden, heads, kv_heads, dim, 0, inter,
                   caches[0].block_size, eps, array, final)  # fmt: skip
    return StepPlan(model, array, max(rope_index) + 1, list(mask_keys), max_rows[0])


def step(
    plan: StepPlan,
    hidden: torch.Tensor,
    cos_sins: list[tuple[torch.Tensor, torch.Tensor]],
    inputs: DecodeInputs,
) -> torch.Tensor | None:
    """hidden (S, hidden_size) bf16 embeddings (overwritten: the residual stream) -> the
    final-normed hidden states (S, hidden_size), or None when this step does not fit (more
    rows than the matmul road takes, other dtypes; the caller runs the modules)."""
    lib = KERNEL.lib
    assert lib is not None
    num_seqs = hidden.shape[0]
    if (
        num_seqs >= plan.max_rows  # the projections would take the dense road there
        or hidden.dtype != torch.bfloat16
        or not hidden.is_contiguous()
        or len(cos_sins) != plan.num_ropes
    ):
        return None
    width = cos_sins[0][0].shape[-1]
    if any(
        c.dtype != torch.bfloat16 or s.dtype != torch.bfloat16 or c.shape[-1] != width
        or not (c.is_contiguous() and s.is_contiguous())
        for c, s in cos_sins
    ):  # fmt: skip
        return None
    plan.model.R = 2 * width
    cos = (ctypes.c_void_p * plan.num_ropes)(*[c.data_ptr() for c, _ in cos_sins])
    sin = (ctypes.c_void_p * plan.num_ropes)(*[s.data_ptr() for _, s in cos_sins])
    starts_list = [inputs.starts[key].contiguous() for key in plan.mask_keys]
    starts = (ctypes.c_void_p * len(starts_list))(*[t.data_ptr() for t in starts_list])
    slots = inputs.slot_mapping.contiguous()
    blocks = inputs.blocks.contiguous()
    ends = inputs.ends.contiguous()
    out = torch.empty_like(hidden)
    status = lib.hearth_decode_step(
        ctypes.byref(plan.model), hidden.data_ptr(), out.data_ptr(), num_seqs, cos, sin,
        slots.data_ptr(), blocks.data_ptr(), blocks.stride(0), starts, ends.data_ptr(),
        *cpu_pool.threads(), torch.get_num_threads(),
    )  # fmt: skip
    if status != 0:
        raise RuntimeError(f"decode step kernel refused the step (status {status})")
    return out
