"""Serving LoRA: several adapters resident at once in fixed slots, every row of a step adding
its own adapter's low-rank update to each projection it targets (the punica / S-LoRA idea,
on the CPU). The base projection runs once for the whole batch; then, per projection and
per slot s that rows of the step use,

    out[rows of s] += (x[rows of s] @ A_s.T) @ B_s          (B_s scaled, kept transposed)

which the backend computes (`Ops.lora_add`; on the CPU one C call per projection that
reads each slot's A and B once, also inside the whole decode step, so a step with adapters
keeps that one call). Slot s owns rows [s*C, (s+1)*C) of the stacked buffers (C = parts *
max_rank); ranks below max_rank are zero-padded, and `ranks` says how many rows of a slot
are in use, so the padding costs nothing. A fused projection (qkv_proj: rows q, k, v;
gate_up_proj: gate, up) keeps one A per part side by side and a block-diagonal B, so it
stays one call.

The update is attached as a forward hook on the projection module, not as a wrapper: the
module stays what the builder made (the backend's whole-decode-step plan reads those
modules), and a step without adapters pays one `is None` test per projection. Adapter math
is float32 (as PEFT's), added in the projection's output dtype. A and B are kept float32,
or bfloat16 for a model whose activations are bfloat16 (the low-bit serving road): there
the slots' bytes are what a step with adapters costs (4 rank-16 adapters on all of
SmolLM2-135M's projections: 78 MB read per step in float32, more than its int4 weights),
and the update is rounded to bfloat16 when added anyway.

Knows nothing of files (weights/peft_adapter.py reads adapters), names, requests or which
adapter is in which slot (engine/lora_adapters.py decides)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hearth.errors import UnsupportedModelError, UserInputError
from hearth.model.layers.ops import REFERENCE, Ops
from hearth.weights.peft_adapter import LoraModule

__all__ = ["LoraBuffers", "LoraSlots", "projection_parts"]

# fused projections -> the HF names of their parts, in row order
_FUSED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}
# modules whose rows are not the step's rows (routed experts), or not served with LoRA
_SKIP = (".experts.", ".shared_experts.", "lm_head", "embed_tokens")


@dataclass
class LoraBuffers:
    """One projection's slots, as `Ops.lora_add` reads them. a: (max_loras * C, in_features)
    float32 or bfloat16 (`LoraSlots`' choice), C = len(parts) * max_rank, slot s part i's rows from s*C + i*max_rank; bt:
    (max_loras * C, out_features) float32, B scaled and transposed, part i's rows filling
    only its columns [offset, offset + size); ranks: (max_loras,) int32, the rows in use per
    part of each slot (0: the slot's adapter does not target this projection). parts:
    (offset, size) of each part's output columns. kernel_view: what a backend made of these
    buffers at its first call (cpu: the C struct), dropped with them."""

    a: torch.Tensor
    bt: torch.Tensor
    ranks: torch.Tensor
    max_rank: int
    parts: tuple[tuple[int, int], ...]
    kernel_view: Any = None


@dataclass
class _Group:
    """One projection module and the HF parts its output rows hold: (name, offset, size)."""

    path: str
    module: nn.Module
    in_features: int
    parts: list[tuple[str, int, int]]
    buffers: LoraBuffers | None = None
    handle: Any = None


def _part_sizes(parent: nn.Module, name: str, out: int) -> list[int]:
    if name == "qkv_proj":
        sizes = list(getattr(parent, "_qkv_sizes", []))
    else:
        half = getattr(parent, "intermediate_size", out // 2)
        sizes = [half, out - half]
    if sum(sizes) != out or len(sizes) != len(_FUSED[name]):
        raise UnsupportedModelError(f"{name}: cannot split its {out} rows into its parts")
    return sizes


def _activation_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype the model computes in: its final norm's (the decoder keeps norms in the
    activation dtype, whatever the projections' storage)."""
    weight = getattr(getattr(getattr(model, "model", None), "norm", None), "weight", None)
    return weight.dtype if isinstance(weight, torch.Tensor) else None


def projection_parts(model: nn.Module) -> dict[str, tuple[str, int]]:
    """HF module path of every projection LoRA may target -> (the module's path, part index).
    A fused `...self_attn.qkv_proj` answers for `...self_attn.q_proj`, `k_proj`, `v_proj`."""
    return {path: (g.path, i) for g in _groups(model) for i, path in enumerate(_part_paths(g))}


def _part_paths(group: _Group) -> list[str]:
    prefix = group.path.rsplit(".", 1)[0]
    return [f"{prefix}.{name}" for name, _, _ in group.parts]


def _groups(model: nn.Module) -> list[_Group]:
    groups = []
    for path, module in model.named_modules():
        in_f, out_f = getattr(module, "in_features", None), getattr(module, "out_features", None)
        if not isinstance(in_f, int) or not isinstance(out_f, int) or not path:
            continue
        if any(s in path for s in _SKIP) or "." not in path:
            continue
        parent_path, name = path.rsplit(".", 1)
        if name in _FUSED:
            sizes = _part_sizes(model.get_submodule(parent_path), name, out_f)
            offsets = [sum(sizes[:i]) for i in range(len(sizes))]
            parts = list(zip(_FUSED[name], offsets, sizes, strict=True))
        else:
            parts = [(name, 0, out_f)]
        groups.append(_Group(path, module, in_f, parts))
    return groups


class LoraSlots:
    """max_loras slots of adapters of rank <= max_rank over `model`'s projections. Memory is
    taken at the first `load` (a base-only model pays nothing), and hooks attached then."""

    def __init__(self, model: nn.Module, max_loras: int, max_rank: int) -> None:
        if max_loras < 1:
            raise UserInputError(f"max_loras must be >= 1, got {max_loras}")
        if max_rank < 1:
            raise UserInputError(f"max_lora_rank must be >= 1, got {max_rank}")
        self.max_loras = max_loras
        self.max_rank = max_rank
        self.groups = _groups(model)
        self._parts: dict[str, tuple[_Group, int]] = {
            path: (g, i) for g in self.groups for i, path in enumerate(_part_paths(g))
        }
        self._step: torch.Tensor | None = None  # the rows' slots (T,) while a step runs
        self._attached = False
        # the backend that computes the updates (the decoder's; PyTorch for a bare module)
        self.ops: Ops = getattr(model, "ops", REFERENCE)
        self.dtype = torch.bfloat16 if _activation_dtype(model) == torch.bfloat16 else torch.float32
        # bumped whenever the buffers are made or freed: a backend's table of their
        # addresses (the decode step's) is valid for one version
        self.version = 0

    # -- adapters -------------------------------------------------------------------
    def check(self, modules: Mapping[str, LoraModule]) -> None:
        """Raise UserInputError when these updates cannot go into a slot: a module the base
        lacks, shapes that are not the base's, a rank above max_rank or the layer's size."""
        for path, update in modules.items():
            where = self._parts.get(path)
            if where is None:
                have = sorted({p.rsplit(".", 1)[-1] for p in self._parts})
                raise UserInputError(
                    f"the adapter targets {path}, which this model does not have (or which "
                    f"LoRA serving does not take); its projections are {', '.join(have)}"
                )
            group, i = where
            _, _, size = group.parts[i]
            shape = (update.b.shape[0], update.a.shape[1])
            if shape != (size, group.in_features):
                raise UserInputError(
                    f"the adapter's {path} is {shape[0]}x{shape[1]} but this model's is "
                    f"{size}x{group.in_features}: it was made for another base model"
                )
            if update.rank > min(size, group.in_features):
                raise UserInputError(
                    f"the adapter's rank {update.rank} at {path} is larger than the layer "
                    f"({size}x{group.in_features})"
                )
            if update.rank > self.max_rank:
                raise UserInputError(
                    f"the adapter's rank is {update.rank} but max_lora_rank is "
                    f"{self.max_rank}; raise --max-lora-rank to at least {update.rank}"
                )

    def load(self, slot: int, modules: Mapping[str, LoraModule]) -> None:
        """Put an adapter in `slot` (replacing what was there)."""
        assert 0 <= slot < self.max_loras
        self.check(modules)
        self._attach()
        self.clear(slot)
        r = self.max_rank
        with torch.no_grad():
            for path, update in modules.items():
                group, i = self._parts[path]
                buffers = group.buffers
                assert buffers is not None
                cols = len(group.parts) * r
                _, offset, size = group.parts[i]
                row = slot * cols + i * r
                buffers.a[row : row + update.rank] = update.a
                buffers.bt[row : row + update.rank, offset : offset + size] = (
                    update.b * update.scaling
                ).t()
                buffers.ranks[slot] = max(int(buffers.ranks[slot]), update.rank)

    def clear(self, slot: int) -> None:
        with torch.no_grad():
            for group in self.groups:
                if group.buffers is not None:
                    cols = len(group.parts) * self.max_rank
                    group.buffers.a[slot * cols : (slot + 1) * cols] = 0
                    group.buffers.bt[slot * cols : (slot + 1) * cols] = 0
                    group.buffers.ranks[slot] = 0

    def _attach(self) -> None:
        if self._attached:
            return
        for group in self.groups:
            cols = len(group.parts) * self.max_rank
            out = sum(size for _, _, size in group.parts)
            # plain tensors even when the first load happens inside a step (inference mode):
            # an inference tensor could not be rewritten by a later load outside one
            with torch.inference_mode(False):
                group.buffers = LoraBuffers(
                    torch.zeros(self.max_loras * cols, group.in_features, dtype=self.dtype),
                    torch.zeros(self.max_loras * cols, out, dtype=self.dtype),
                    torch.zeros(self.max_loras, dtype=torch.int32),
                    self.max_rank,
                    tuple((offset, size) for _, offset, size in group.parts),
                )
            group.handle = group.module.register_forward_hook(self._hook_for(group))
        self._attached = True
        self.version += 1

    def detach(self) -> None:
        """Remove the hooks and free the slots' memory."""
        for group in self.groups:
            if group.handle is not None:
                group.handle.remove()
            group.buffers = group.handle = None
        self._attached = False
        self.version += 1

    @property
    def nbytes(self) -> int:
        return sum(
            t.numel() * t.element_size()
            for g in self.groups
            if g.buffers is not None
            for t in (g.buffers.a, g.buffers.bt)
        )

    def buffers_of(self, module: nn.Module) -> LoraBuffers | None:
        """The slots of projection `module` (None: not served, or nothing loaded yet)."""
        for group in self.groups:
            if group.module is module:
                return group.buffers
        return None

    # -- a step ---------------------------------------------------------------------
    @contextmanager
    def rows(self, token_slots: torch.Tensor) -> Iterator[None]:
        """Inside the block, every hooked projection adds row t's adapter update (slot
        token_slots[t]; -1 = none). token_slots: (T,) int64."""
        assert self._attached, "rows() before any adapter was loaded"
        self._step = token_slots.contiguous()
        try:
            yield
        finally:
            self._step = None

    def _hook_for(self, group: _Group) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> Any:
            token_slots = self._step
            if token_slots is None:
                return None
            assert group.buffers is not None
            self.ops.lora_add(out, args[0], group.buffers, token_slots)
            return out

        return hook
