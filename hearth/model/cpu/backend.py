"""The CPU backend: the fast operations of layers/ops.py on hearth's C kernels (this
folder), each used where its tensors fit and the reference PyTorch elsewhere. Which kernels
run is decided once, when the backend is made (model/backend.py `select_backend`): a kernel
switched off in `disabled`, one that fails to build (one warning, naming it and what runs
instead) or one whose CPU feature is missing is simply not offered, and no layer ever asks.

The kernels are built for one instruction-set level (isa.py: avx512, avx2 or generic;
the setting cpu_isa, auto: the best this CPU runs); a kernel without a road for that level
is not offered. The kernels (names for `disabled_kernels`):
  lowbit       int4/int8 matmuls, AVX-512 VNNI / AVX2 / C roads (lowbit_matmul.c)
  dense        float32 matmuls of few rows, weight read in place; AVX-512 (dense_matmul.c)
  onednn       other float32 CPU projections on oneDNN's GEMM instead of MKL's SGEMM
  paged        paged decode attention reading the KV cache in place (paged_decode.c)
  prefill      causal float32 prefill attention; AVX-512 (prefill_attention.c)
  decode-ops   RMSNorm, SiLU gate, rope + KV write in one pass each (decode_ops.c)
  decode-step  a whole decode-only step of a plain Llama-family model (decode_step.c)
  lora         serving LoRA's per-row updates, rows grouped by adapter (lora_delta.c)

Threads: the kernels run on `threads` threads (set by the engine with `set_threads`) on
the work-sharing pool (thread_pool.c) or an OpenMP team; see docs/model-layer.md for the
numbers behind each choice."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from hearth.model.cpu import (
    amx,
    decode_ops,
    decode_step,
    dense_matmul,
    isa,
    lora_delta,
    lowbit_matmul,
    paged_decode,
    prefill_attention,
)
from hearth.model.kv_cache import KVCache
from hearth.model.layers.ops import Ops
from hearth.model.layers.quant import DENSE_MIN_ROWS

if TYPE_CHECKING:
    from hearth.model.layers.attention import DecodeInputs
    from hearth.model.layers.decoder import Decoder
    from hearth.model.layers.lora_slots import LoraBuffers, LoraSlots
    from hearth.weights.config import ModelConfig

KERNEL_NAMES = (
    "lowbit", "dense", "onednn", "paged", "prefill", "decode-ops", "decode-step", "lora",
)  # fmt: skip


def _onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class CpuLowbit:
    """The low-bit kernel (lowbit_matmul.py) as layers/quant.py asks for it, on the
    backend's threads."""

    def __init__(self, backend: CpuBackend) -> None:
        self._backend = backend
        # The low-bit kernel against the dense road (weights expanded to bf16 for the call),
        # 2 threads, the 3072 x 576 gate/up projection: where the CPU has AMX (Xeon, bf16
        # tiles) dense wins from ~384 rows; without it (AMD EPYC, AVX-512 BF16) the kernel
        # wins at every prefill size measured: 512 rows 5.3 ms against 13.2 (the expansion
        # alone ~10 ms), 2048 rows 23.6 against 24.1. AMX only where Linux granted it.
        self.dense_min_rows = DENSE_MIN_ROWS if amx.usable().usable else 1 << 62
        self.supports = lowbit_matmul.supports
        self.pack_int4 = lowbit_matmul.pack_int4
        self.unpack_int4 = lowbit_matmul.unpack_int4
        self.pack_int8 = lowbit_matmul.pack_int8
        self.int8_rows = lowbit_matmul.int8_rows

    def int4_matmul(
        self, x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor, mins: torch.Tensor,
        out_f32: bool,
    ) -> torch.Tensor:  # fmt: skip
        return lowbit_matmul.int4_matmul(x, codes, scales, mins, out_f32, self._backend.threads())

    def int8_matmul(
        self, x: torch.Tensor, codes: torch.Tensor, corr: torch.Tensor, scales: torch.Tensor,
        out_f32: bool,
    ) -> torch.Tensor:  # fmt: skip
        return lowbit_matmul.int8_matmul(x, codes, corr, scales, out_f32, self._backend.threads())


class CpuBackend(Ops):
    """Ops on the C kernels this process could build for instruction-set `level` (None: the
    best this CPU runs, isa.choose), minus those in `disabled`. One level per process: the
    kernels' wrappers call the level loaded last (the kernel tests make one per level)."""

    def __init__(self, disabled: tuple[str, ...] = (), level: str | None = None) -> None:
        chosen = level or isa.choose("auto") or "generic"

        def wanted(name: str, available: Any) -> bool:
            # a switched-off kernel is never built
            return name not in disabled and bool(available(chosen))

        self.level = chosen
        self.name = f"cpu-{chosen}"
        self.norm_ops = wanted("decode-ops", decode_ops.available)
        self.paged = wanted("paged", paged_decode.available)
        self.prefill = wanted("prefill", prefill_attention.available)
        self.dense = wanted("dense", dense_matmul.available)
        self.onednn = wanted("onednn", lambda _level: _onednn_available())
        self.lowbit = CpuLowbit(self) if wanted("lowbit", lowbit_matmul.available) else None
        # the step is built from the low-bit and paged kernels' own functions
        self.step = (
            self.lowbit is not None and self.paged and wanted("decode-step", decode_step.available)
        )
        self.lora = wanted("lora", lora_delta.available)
        # threads of the kernels (set_threads); None: OpenMP at torch's thread count
        self._threads: int | None = None
        self._pooled = True

    def enabled(self) -> list[str]:
        """The kernels this backend runs, by their `disabled_kernels` names."""
        on = {
            "lowbit": self.lowbit is not None, "dense": self.dense, "onednn": self.onednn,
            "paged": self.paged, "prefill": self.prefill, "decode-ops": self.norm_ops,
            "decode-step": self.step, "lora": self.lora,
        }  # fmt: skip
        return [name for name in KERNEL_NAMES if on[name]]

    def describe(self) -> str:
        road = f" [lowbit {lowbit_matmul.road()}]" if self.lowbit is not None else ""
        return (
            f"kernels: {self.name} ({', '.join(self.enabled()) or 'none'}){road}; "
            f"threads {self.threads()[0]}"
        )

    def set_threads(self, threads: int | None, pooled: bool = True) -> None:
        """Run the kernels with `threads` threads (the process's budget, whatever torch's count
        for the step) on the pool, or on an OpenMP team of that size (pooled False), or on
        OpenMP at torch's thread count (None). Measured on 2 cores, one-token decode steps of
        SmolLM2 Q4_1 with PASSIVE OpenMP workers: 9.0 ms of matmuls per token on 1 thread,
        15.7 ms on 2 OpenMP threads woken per region, 5.2 ms on the pool. With OpenMP's
        default spinning workers the pool's own spinning helpers fight them instead (float32
        decode of SmolLM2, 1 / 16 / 30 sequences of 1,000 tokens: 44 / 106 / 160 ms a step
        on the pool, 36 / 90 / 129 ms on OpenMP), hence `pooled`."""
        self._threads = threads
        self._pooled = pooled

    def threads(self) -> tuple[int, bool]:
        """(threads, pooled) for the next kernel call."""
        if self._threads is not None:
            return self._threads, self._pooled
        return torch.get_num_threads(), False

    def linear(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """float32 CPU products outside autograd: a decode step's few rows on the dense
        kernel (the weight read in place, once), more rows on oneDNN's GEMM (the op torch's
        inductor emits for CPU linears: 1.2-1.7x MKL's SGEMM on the 2-core AVX-512 machine,
        the weight reordered per call rather than a packed copy kept resident)."""
        if not (
            x.dtype == torch.float32
            and weight.dtype == torch.float32
            and x.device.type == "cpu"
            and weight.device.type == "cpu"
            and x.dim() >= 2
            and x.numel() > 0
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        ):
            return super().linear(x, weight, bias)
        rows = x.reshape(-1, x.shape[-1]).contiguous()  # no copy when it already is
        if self.dense and rows.shape[0] <= dense_matmul.MAX_ROWS:
            out = dense_matmul.matmul(rows, weight, bias, self.threads())
        elif self.onednn:
            out = torch.ops.mkldnn._linear_pointwise(
                rows, weight.contiguous(), bias, "none", [], ""
            )
        else:
            return super().linear(x, weight, bias)
        return out.reshape(*x.shape[:-1], weight.shape[0])

    def rms_norm(
        self, x: torch.Tensor, weight: torch.Tensor, eps: float, unit_offset: bool
    ) -> torch.Tensor:
        if self.norm_ops and decode_ops.applies(x, weight):  # one C pass, same roundings
            return decode_ops.rms_norm(x, weight, eps, unit_offset)
        return super().rms_norm(x, weight, eps, unit_offset)

    def silu_mul(self, gate_up: torch.Tensor) -> torch.Tensor:
        if self.norm_ops and decode_ops.applies(gate_up):
            return decode_ops.silu_mul(gate_up)
        return super().silu_mul(gate_up)

    def rope_cache(
        self,
        qkv: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache,
        slot_mapping: torch.Tensor,
        num_heads: int,
    ) -> torch.Tensor:
        if self.norm_ops and decode_ops.applies(qkv, cache.key, cache.value, cos, sin):
            return decode_ops.rope_cache(
                qkv, cos, sin, cache.key, cache.value, slot_mapping, num_heads
            )
        return super().rope_cache(qkv, cos, sin, cache, slot_mapping, num_heads)

    def decodes_in_place(self, query: torch.Tensor, cache: KVCache) -> bool:
        return self.paged and paged_decode.supports(query, cache.key, cache.value)

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
        if not self.decodes_in_place(query, cache):
            return super().paged_decode(query, cache, inputs, scale, sliding_window, softcap, chunk)
        return paged_decode.paged_decode(
            query, cache.key, cache.value, inputs.blocks, inputs.starts[sliding_window, chunk],
            inputs.ends, scale, softcap or 0.0, self.threads(),
        )  # fmt: skip

    def causal_prefill(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        positions: torch.Tensor,
        scale: float,
    ) -> torch.Tensor:
        if self.prefill and prefill_attention.supports(query, key, value):
            return prefill_attention.causal_attention(query, key, value, scale)
        return super().causal_prefill(query, key, value, positions, scale)

    def step_fits(self, config: ModelConfig, lowbit_projections: bool) -> bool:
        return self.step and lowbit_projections and decode_step.fits(config)

    def plan_decode_step(self, decoder: Decoder, caches: list[KVCache]) -> Any:
        assert self.lowbit is not None, "step_fits said the step runs without its matmuls"
        return decode_step.plan(decoder, caches, self.lowbit.dense_min_rows)

    def decode_step(
        self,
        plan: Any,
        hidden: torch.Tensor,
        cos_sins: list[tuple[torch.Tensor, torch.Tensor]],
        inputs: DecodeInputs,
        lora: tuple[LoraSlots, torch.Tensor] | None = None,
    ) -> torch.Tensor | None:
        if lora is not None and not self.lora:
            return None  # the layers run, their hooks on the PyTorch update
        return decode_step.step(plan, hidden, cos_sins, inputs, self.threads(), lora)

    def lora_add(
        self, out: torch.Tensor, x: torch.Tensor, lora: LoraBuffers, token_slots: torch.Tensor
    ) -> None:
        if self.lora and lora_delta.applies(out, x):
            lora_delta.add(out, x, lora, token_slots, self.threads())
        else:
            super().lora_add(out, x, lora, token_slots)
