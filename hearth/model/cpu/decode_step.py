"""A decode-only step of a plain Llama-family decoder as one C call (decode_step.c):
every layer's norms, projections, rope, cache write, paged attention, gated MLP and residual
adds, then the final norm, with the very functions the per-op C road calls one at a time.

Why: with the low-bit kernels a SmolLM2-135M token's matmuls take ~5 ms on 2 cores, and the
~15 Python-dispatched calls per layer (30 layers) took about as long again. The step's
result is bit-identical to the eager road (tests/model/test_decode_step.py).

Which models: `fits` says it from the ModelConfig alone (every layer a plain rope attention
and a SiLU MLP, nothing the C code does not implement), and the builder adds what it built
(every projection fused, int4/int8 in the low-bit kernel's layout, bfloat16 activations);
the decoder then plans a step per set of bfloat16 KV caches. A layer feature not listed in
`fits` makes it refuse: the layers run as modules. Knows nothing of the engine."""

from __future__ import annotations

import ctypes
import logging
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from hearth.model.cpu import lora_delta, native_build, thread_pool
from hearth.model.kv_cache import KVCache
from hearth.model.layers.attention import DecodeInputs, MaskKey
from hearth.model.layers.quant import Int4Linear, Int8Linear
from hearth.weights.config import ModelConfig

if TYPE_CHECKING:
    from hearth.model.layers.decoder import Decoder
    from hearth.model.layers.lora_slots import LoraSlots

log = logging.getLogger(__name__)

# the paged kernel's limits (paged_decode.c): head widths and query heads per KV head
_MAX_HEAD_DIM = 512
_MAX_GROUP = 32


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
    fn.argtypes += [pointer, int64, pointer, pointer, pointer, pointer, int32, int32, int32]
    lib.hearth_step_set_pool.argtypes = [pointer]
    lib.hearth_step_set_pool(thread_pool.pointer())


KERNEL = native_build.Kernel("decode_step", log, "decode layers run one op at a time", _setup)


def available(level: str | None = None) -> bool:
    """Whether the kernel is built and loaded for `level` (isa.py; None: the level loaded
    last). The backend also needs the low-bit and paged kernels, whose functions it is
    built from."""
    return KERNEL.load(level) is not None


def fits(config: ModelConfig) -> bool:
    """Whether every layer of a model of this config is what the C step computes: rope
    attention (halves rotated, on every layer) without q/k norms, biases, soft-capping, query
    temperature or sandwich norms, Llama's RMSNorm, a SiLU gated MLP (no experts, no MLA).
    Sliding windows and chunks it does take (a key range per layer). A new layer feature
    must be added here as a refusal until decode_step.c implements it."""
    num_layers = config.num_hidden_layers
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    return (
        num_layers > 0
        and config.mla is None
        and not any(config.is_moe(i) for i in range(num_layers))
        and all(config.uses_rope(i) for i in range(num_layers))
        and not any(config.rope_for(i).interleaved for i in range(num_layers))
        and not config.qk_norm
        and not config.qk_l2_norm
        and not config.attn_temperature_tuning
        and not (config.qkv_bias or config.o_bias or config.mlp_bias)
        and config.attn_logit_softcapping is None
        and not config.sandwich_norm
        and not config.norm_unit_offset
        and config.hidden_act == "silu"
        and config.head_dim <= _MAX_HEAD_DIM
        and heads % kv_heads == 0
        and heads // kv_heads <= _MAX_GROUP
    )


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
    projections: list[tuple[Any, ...]]  # per layer: its qkv, o, gate_up, down modules
    # the adapters' slots as the step reads them (lora_table), for one LoraSlots version
    lora_key: tuple[weakref.ref[LoraSlots], int] | None = None
    lora_views: Any = None


def _linear(module: Any) -> _Linear:
    """A projection as the step reads it: the low-bit kernel's layout (the builder put every
    projection there: `fits` and the build's own facts say so)."""
    n, k = module.out_features, module.in_features
    if type(module) is Int4Linear:
        assert module.lowbit, "the builder promised low-bit projections"
        return _Linear(0, n, k, module.codes.data_ptr(), module.scales.data_ptr(),
                       module.mins.data_ptr())  # fmt: skip
    assert type(module) is Int8Linear and module.int8.corr is not None
    t = module.int8
    return _Linear(1, n, k, t.codes.data_ptr(), module.int8.corr.data_ptr(), t.scales.data_ptr())


def plan(decoder: Decoder, caches: list[KVCache], max_rows: int) -> StepPlan | None:
    """The C step's view of this decoder's layers for these caches (the builder found the
    model fits), or None when the caches do not (the step wants bfloat16, contiguous, one
    block size, value width = head_dim). max_rows: from this many sequences a step runs
    the modules (their projections take the dense road there)."""
    config = decoder.config
    layers: list[Any] = list(decoder.model.layers)
    heads, kv_heads, dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    block_size = caches[0].block_size if caches else 0
    if len(caches) != len(layers) or not all(
        cache.key.dtype == cache.value.dtype == torch.bfloat16
        and cache.key.is_contiguous()
        and cache.value.is_contiguous()
        and cache.value.shape[-1] == dim
        and cache.block_size == block_size
        for cache in caches
    ):
        return None
    ropes = list(decoder.ropes)
    rope_index = [ropes.index(config.rope_for(i)) for i in range(len(layers))]
    eps = config.rms_norm_eps
    specs = []
    projections = []
    for i, (layer, cache) in enumerate(zip(layers, caches, strict=True)):
        attn, mlp = layer.self_attn, layer.mlp
        assert attn.qkv_proj is not None and mlp.gate_up_proj is not None, "not fused"
        projections.append((attn.qkv_proj, attn.o_proj, mlp.gate_up_proj, mlp.down_proj))
        qkv, o = _linear(attn.qkv_proj), _linear(attn.o_proj)
        gate_up, down = _linear(mlp.gate_up_proj), _linear(mlp.down_proj)
        norms = layer.input_layernorm.weight, layer.post_attention_layernorm.weight
        assert all(w.dtype == torch.bfloat16 and w.is_contiguous() for w in norms)
        key = (attn.sliding_window, attn.chunk)
        specs.append(
            _Layer(norms[0].data_ptr(), norms[1].data_ptr(), qkv, o, gate_up, down,
                   cache.key.data_ptr(), cache.value.data_ptr(), rope_index[i],
                   decoder.mask_keys.index(key), attn.scale)
        )  # fmt: skip
    final = decoder.model.norm.weight
    assert final.dtype == torch.bfloat16 and final.is_contiguous()
    array = (_Layer * len(specs))(*specs)
    model = _Model(len(specs), config.hidden_size, heads, kv_heads, dim, 0,
                   config.intermediate_size, block_size, eps, array, final.data_ptr())  # fmt: skip
    return StepPlan(
        model, array, max(rope_index) + 1, list(decoder.mask_keys), max_rows, projections
    )


def lora_table(plan: StepPlan, slots: LoraSlots) -> Any:
    """Per layer, its four projections' slots as lora_delta.c reads them (NULL where the
    adapters do not serve one): (layers * 4) pointers, made once per version of `slots`
    (their tensors are written in place by loads, replaced only by attach/detach)."""
    key = plan.lora_key
    if key is None or key[0]() is not slots or key[1] != slots.version:
        views = []
        for module in (m for layer in plan.projections for m in layer):
            buffers = slots.buffers_of(module)
            views.append(None if buffers is None else lora_delta.view(buffers))
        pointers = (ctypes.c_void_p * len(views))(
            *[None if v is None else ctypes.addressof(v) for v in views]
        )
        plan.lora_key, plan.lora_views = (weakref.ref(slots), slots.version), (views, pointers)
    return plan.lora_views[1]


def step(
    plan: StepPlan,
    hidden: torch.Tensor,
    cos_sins: list[tuple[torch.Tensor, torch.Tensor]],
    inputs: DecodeInputs,
    threads: tuple[int, bool],
    lora: tuple[LoraSlots, torch.Tensor] | None = None,
) -> torch.Tensor | None:
    """hidden (S, hidden_size) bf16 embeddings (overwritten: the residual stream) -> the
    final-normed hidden states (S, hidden_size), or None when this step does not fit (more
    rows than the matmul road takes, other dtypes; the caller runs the modules). threads:
    (count, on the pool) for the matmuls and attention (cpu/backend.py). lora: the
    adapters' slots and each row's slot (S,) int64 (-1: none), when rows use adapters."""
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
    table, row_slots = None, None
    if lora is not None:
        table, row_slots = lora_table(plan, lora[0]), lora[1].contiguous()
    out = torch.empty_like(hidden)
    status = lib.hearth_decode_step(
        ctypes.byref(plan.model), hidden.data_ptr(), out.data_ptr(), num_seqs, cos, sin,
        slots.data_ptr(), blocks.data_ptr(), blocks.stride(0), starts, ends.data_ptr(), table,
        None if row_slots is None else row_slots.data_ptr(), *threads, torch.get_num_threads(),
    )  # fmt: skip
    if status != 0:
        raise RuntimeError(f"decode step kernel refused the step (status {status})")
    return out
