"""Serving LoRA: several adapters resident at once in fixed slots, every row of a step adding
its own adapter's low-rank update to each projection it targets (the punica / S-LoRA idea,
on the CPU). The base projection runs once for the whole batch; then, per projection,

    delta = ((x @ A_all.T) * onehot(row slot)) @ B_all          (T, out)

where A_all stacks every slot's A (slot s owns rows [s*C, (s+1)*C), C = parts * max_rank)
and B_all its (scaled, transposed) B. Masking the low-rank activations by the row's slot
makes one pair of matmuls serve any mix of adapters (a row of slot -1, the base, gets an
exact zero): no per-adapter loop, no per-row gather of weights. Ranks below max_rank are
zero-padded, which changes nothing. A fused projection (qkv_proj: rows q, k, v; gate_up_proj:
gate, up) keeps one A per part side by side and a block-diagonal B, so it stays one pair.

The update is attached as a forward hook on the projection module, not as a wrapper: the
module stays what the builder made (the backend's whole-decode-step plan reads those
modules), and a step without adapters pays one `is None` test per projection. A step whose
rows name adapters runs the layers (`Decoder.forward`), never the C step, which has no
LoRA. Adapter math is float32 (as PEFT's), added in the projection's output dtype.

Knows nothing of files (weights/peft_adapter.py reads adapters), names, requests or which
adapter is in which slot (engine/lora_adapters.py decides)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hearth.errors import UnsupportedModelError, UserInputError
from hearth.weights.peft_adapter import LoraModule

__all__ = ["LoraSlots", "projection_parts"]

# fused projections -> the HF names of their parts, in row order
_FUSED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}
# modules whose rows are not the step's rows (routed experts), or not served with LoRA
_SKIP = (".experts.", ".shared_experts.", "lm_head", "embed_tokens")


@dataclass
class _Group:
    """One projection module and the HF parts its output rows hold: (name, offset, size)."""

    path: str
    module: nn.Module
    in_features: int
    parts: list[tuple[str, int, int]]
    a: torch.Tensor | None = None  # (max_loras * C, in) float32
    bt: torch.Tensor | None = None  # (max_loras * C, out) float32
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
        self._step: _Step | None = None  # the rows' slots while a step runs
        self._attached = False

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
                assert group.a is not None and group.bt is not None
                cols = len(group.parts) * r
                _, offset, size = group.parts[i]
                row = slot * cols + i * r
                group.a[row : row + update.rank] = update.a
                group.bt[row : row + update.rank, offset : offset + size] = (
                    update.b * update.scaling
                ).t()

    def clear(self, slot: int) -> None:
        with torch.no_grad():
            for group in self.groups:
                if group.a is not None and group.bt is not None:
                    cols = len(group.parts) * self.max_rank
                    group.a[slot * cols : (slot + 1) * cols] = 0
                    group.bt[slot * cols : (slot + 1) * cols] = 0

    def _attach(self) -> None:
        if self._attached:
            return
        for group in self.groups:
            cols = len(group.parts) * self.max_rank
            out = sum(size for _, _, size in group.parts)
            # plain tensors even when the first load happens inside a step (inference mode):
            # an inference tensor could not be rewritten by a later load outside one
            with torch.inference_mode(False):
                group.a = torch.zeros(self.max_loras * cols, group.in_features)
                group.bt = torch.zeros(self.max_loras * cols, out)
            group.handle = group.module.register_forward_hook(self._hook_for(group))
        self._attached = True

    def detach(self) -> None:
        """Remove the hooks and free the slots' memory."""
        for group in self.groups:
            if group.handle is not None:
                group.handle.remove()
            group.a = group.bt = group.handle = None
        self._attached = False

    @property
    def nbytes(self) -> int:
        return sum(
            t.numel() * t.element_size() for g in self.groups for t in (g.a, g.bt) if t is not None
        )

    # -- a step ---------------------------------------------------------------------
    @contextmanager
    def rows(self, token_slots: torch.Tensor) -> Iterator[None]:
        """Inside the block, every hooked projection adds row t's adapter update (slot
        token_slots[t]; -1 = none). token_slots: (T,) int64."""
        assert self._attached, "rows() before any adapter was loaded"
        n = int(token_slots.max()) + 1
        if n > 0:
            onehot = torch.zeros(len(token_slots), n)
            used = token_slots >= 0
            onehot[used.nonzero().squeeze(1), token_slots[used]] = 1.0
            # one slot for every row (a batch of one adapter): no mask to apply
            whole = bool(used.all()) and bool((token_slots == token_slots[0]).all())
            self._step = _Step(onehot, n, int(token_slots[0]) if whole else None, {})
        try:
            yield
        finally:
            self._step = None

    def _hook_for(self, group: _Group) -> Any:
        cols = len(group.parts) * self.max_rank

        def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> Any:
            step = self._step
            if step is None:
                return None
            assert group.a is not None and group.bt is not None
            x = args[0].float()
            if step.only is not None:  # every row on one adapter: its slot's rows alone
                rows = slice(step.only * cols, (step.only + 1) * cols)
                low = F.linear(x, group.a[rows])  # (T, C)
                return out.add_(torch.mm(low, group.bt[rows]).to(out.dtype))
            n = step.num_slots
            # (T, n*C): every resident adapter's low-rank activations, then only the row's own
            low = F.linear(x, group.a[: n * cols]).mul_(step.mask(cols))
            return out.add_(torch.mm(low, group.bt[: n * cols]).to(out.dtype))

        return hook


@dataclass
class _Step:
    """One step's row -> slot facts: onehot (T, n) float32; only: the one slot of every row,
    if so; masks: onehot widened to C columns per slot, made once per width."""

    onehot: torch.Tensor
    num_slots: int
    only: int | None
    masks: dict[int, torch.Tensor]

    def mask(self, cols: int) -> torch.Tensor:
        mask = self.masks.get(cols)
        if mask is None:
            mask = self.onehot.repeat_interleave(cols, dim=1)  # (T, n*cols)
            self.masks[cols] = mask
        return mask
