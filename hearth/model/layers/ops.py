"""The operations a backend may do faster than the layers' own PyTorch, and their reference:
`Ops` runs each one in plain PyTorch (what `kernels = "torch"` selects, and what every
faster backend must equal); cpu/backend.py's `CpuBackend` overrides them with C kernels
where the tensors fit and falls back to these otherwise.

A layer holds the Ops it was built with and calls these methods; it never asks which
kernels exist, which CPU it runs on, or what the environment says. Knows nothing of
kernels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from hearth.model.kv_cache import KVCache
    from hearth.model.layers.attention import DecodeInputs
    from hearth.model.layers.lora_slots import LoraBuffers, LoraSlots


class LowbitMatmul(Protocol):
    """A low-bit matmul kernel and its weight layout (cpu/lowbit_matmul.py). Int4Linear and
    Int8Linear keep one layout: this one where `supports` says so, else PyTorch's."""

    # from this many rows on an Int4Linear expands its weight and runs the dense GEMM
    dense_min_rows: int

    def supports(self, out_features: int, in_features: int, group_size: int = 32) -> bool: ...
    def pack_int4(
        self, q: torch.Tensor, scales_and_zeros: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...
    def unpack_int4(
        self, codes: torch.Tensor, scales: torch.Tensor, mins: torch.Tensor
    ) -> torch.Tensor: ...
    def pack_int8(
        self, q: torch.Tensor, scales: torch.Tensor, reuse_storage: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...
    def int8_rows(self, codes: torch.Tensor, ids: torch.Tensor) -> torch.Tensor: ...
    def int4_matmul(
        self, x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor, mins: torch.Tensor,
        out_f32: bool,
    ) -> torch.Tensor: ...  # fmt: skip
    def int8_matmul(
        self, x: torch.Tensor, codes: torch.Tensor, corr: torch.Tensor, scales: torch.Tensor,
        out_f32: bool,
    ) -> torch.Tensor: ...  # fmt: skip


class Ops:
    """The reference backend: every operation in PyTorch, no kernels."""

    name = "torch"
    # the low-bit kernel, or None: PyTorch's int4/int8 kernels
    lowbit: LowbitMatmul | None = None

    def enabled(self) -> list[str]:
        """The kernels this backend runs (none: everything is PyTorch's)."""
        return []

    def describe(self) -> str:
        """One line that says what runs (logged once at load)."""
        return "kernels: torch (reference PyTorch)"

    def set_threads(self, threads: int | None, pooled: bool = True) -> None:
        """How many threads a step's kernels use (the engine's budget); PyTorch's own ops
        follow torch.get_num_threads(), which the engine sets per step."""

    def linear(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (..., K) @ weight (N, K).T (+ bias (N,)) -> (..., N)."""
        return F.linear(x, weight, bias)

    def rms_norm(
        self, x: torch.Tensor, weight: torch.Tensor, eps: float, unit_offset: bool
    ) -> torch.Tensor:
        """x (..., D) / rms(x) * weight (D,), computed in float32. unit_offset (Gemma): scale
        by (1 + w) before casting back (Gemma casts after the scale; Llama casts, then
        scales)."""
        if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
            from hearth.model.layers.norms import rms_norm_trained

            return rms_norm_trained(x, weight, eps, unit_offset)
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
        if unit_offset:
            return (normed * (1.0 + weight.float())).to(x.dtype)
        return weight * normed.to(x.dtype)

    def silu_mul(self, gate_up: torch.Tensor) -> torch.Tensor:
        """(..., 2 I) rows [gate | up] -> silu(gate) * up, (..., I)."""
        gate, up = gate_up.split(gate_up.shape[-1] // 2, dim=-1)
        return F.silu(gate) * up

    def rope_cache(
        self,
        qkv: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache,
        slot_mapping: torch.Tensor,
        num_heads: int,
    ) -> torch.Tensor:
        """A fused projection qkv (T, (H + 2 Hkv) D): rope (halves rotated; cos/sin (T,
        R/2)) on q and k, k and v written to `cache` at slot_mapping (T,); returns the
        rotated q (T, H, D)."""
        from hearth.model.layers.rope import apply_rope

        num_kv_heads, dim = cache.key.shape[2], cache.key.shape[3]
        tokens = qkv.shape[0]
        q, k, v = qkv.split([num_heads * dim, num_kv_heads * dim, num_kv_heads * dim], dim=-1)
        q = apply_rope(q.view(tokens, num_heads, dim), cos, sin)
        k = apply_rope(k.view(tokens, num_kv_heads, dim), cos, sin)
        cache.write(slot_mapping, k, v.view(tokens, num_kv_heads, dim))
        return q

    def paged_decode(
        self,
        query: torch.Tensor,
        cache: KVCache,
        inputs: DecodeInputs,
        scale: float,
        sliding_window: int | None,
        softcap: float | None,
        chunk: int | None,
    ) -> torch.Tensor:
        """One query per sequence (S, H, Dk) over its cached context (K/V written already):
        gathered through the block table in one indexing op, then SDPA. -> (S, H, Dv)."""
        from hearth.model.layers.attention import gathered_decode

        return gathered_decode(query, cache, inputs, scale, sliding_window, softcap, chunk)

    def decodes_in_place(self, query: torch.Tensor, cache: KVCache) -> bool:
        """Whether `paged_decode` reads these caches in place (then a mixed step's one-token
        sequences attend together on it rather than one by one)."""
        return False

    def causal_prefill(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        positions: torch.Tensor,
        scale: float,
    ) -> torch.Tensor:
        """One sequence's queries (L, H, Dk), the last L positions of a context of keys and
        values (C, Hkv, D), each query seeing the keys up to its own position (no window or
        chunk). -> (L, H, Dv)."""
        from hearth.model.layers.attention import sdpa_prefill

        return sdpa_prefill(query, key, value, positions, scale)

    def plan_decode_step(self, decoder: Any, caches: list[KVCache]) -> Any:
        """The whole-decode-step road for this decoder and these caches, or None (the
        layers run one by one). Only a backend with such a road plans one; the builder asks
        only when `step_fits` said the model fits it."""
        return None

    def step_fits(self, config: Any, lowbit_projections: bool) -> bool:
        """Whether a model of this config, built with every projection on `lowbit` (fused,
        bfloat16 activations), fits the backend's whole-decode-step road."""
        return False

    def decode_step(
        self,
        plan: Any,
        hidden: torch.Tensor,
        cos_sins: list[tuple[torch.Tensor, torch.Tensor]],
        inputs: DecodeInputs,
        lora: tuple[LoraSlots, torch.Tensor] | None = None,
    ) -> torch.Tensor | None:
        """A decode-only step through `plan`: the final-normed hidden states, or None when
        this step does not fit (the layers run). lora: the adapters' slots and each row's
        slot (S,) int64 (-1: none), for a step whose rows use adapters."""
        return None

    def lora_add(
        self, out: torch.Tensor, x: torch.Tensor, lora: LoraBuffers, token_slots: torch.Tensor
    ) -> None:
        """out (T, N) += each row's LoRA update from its slot token_slots[t] (T,) int64 (-1:
        none), computed in float32 from x (T, K) and added in out's dtype (lora_slots.py
        holds the layout). One slot at a time: each slot's A and B are read once."""
        cols = len(lora.parts) * lora.max_rank
        x32 = x.float()
        for slot in token_slots.unique().tolist():
            if slot < 0 or int(lora.ranks[slot]) == 0:
                continue
            rows = (token_slots == slot).nonzero().squeeze(1)
            own = slice(slot * cols, (slot + 1) * cols)
            low = F.linear(x32.index_select(0, rows), lora.a[own].float())  # (rows, C)
            out.index_add_(0, rows, torch.mm(low, lora.bt[own].float()).to(out.dtype))


REFERENCE = Ops()
