"""LoraAdapters: the engine's named LoRA adapters and which of them sit in the model's fixed
slots (vLLM's LoRA manager). An adapter is registered by name and path (a PEFT folder or a GGUF
LoRA file, read and checked against the base at once, so a bad one fails at load, not at its first request); a step's
adapters are put into slots just before it runs, the least recently used slot that this step
does not need giving way when all are taken (the scheduler never runs more distinct adapters
at once than there are slots). Removing an adapter that requests still use waits for them:
new requests are refused at once, the adapter goes when the last one finishes.

Knows nothing of HTTP; the tensors go through model/layers/lora_slots.py."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.errors import NotFoundError, UserInputError
from hearth.model.layers.lora_slots import LoraSlots
from hearth.weights.gguf_adapter import gguf_adapter_file, read_gguf_adapter
from hearth.weights.peft_adapter import PeftAdapter, read_peft_adapter

__all__ = ["Adapter", "LoraAdapters"]


@dataclass(frozen=True)
class Adapter:
    """name: what requests call it; key: the root of its sequences' prefix-cache chain
    (from the weights' digest: two adapters never share KV blocks, the same one does)."""

    name: str
    path: Path
    rank: int
    targets: tuple[str, ...]
    base_name: str | None
    key: int


class LoraAdapters:
    """model: the Decoder. base_name / base_digest: the model's store name and digest, which
    an adapter that names its base (hearth's own do) must match."""

    def __init__(
        self,
        model: Any,
        max_loras: int,
        max_rank: int,
        base_name: str | None = None,
        base_digest: str | None = None,
    ) -> None:
        self.model = model
        self.slots = LoraSlots(model, max_loras, max_rank)
        self.base_name = base_name
        self.base_digest = base_digest
        self.adapters: dict[str, Adapter] = {}
        self._weights: dict[str, PeftAdapter] = {}  # kept: slots are refilled from memory
        self._resident: OrderedDict[str, int] = OrderedDict()  # name -> slot, LRU first
        self.removing: set[str] = set()  # unloaded while requests still use them
        self.requests_total: dict[str, int] = {}

    # -- registry -------------------------------------------------------------------
    def add(self, name: str, path: Path | str) -> Adapter:
        """Read, check and register the adapter in `path` (a PEFT folder, a GGUF LoRA file
        or a folder holding one) as `name` (replacing an idle adapter of that name). Raises
        UserInputError naming what does not fit."""
        if not name or any(c.isspace() for c in name):
            raise UserInputError(f"adapter name {name!r}: give a name without spaces")
        if name in self.removing:
            raise UserInputError(f"adapter {name} is being unloaded; load it again once it is")
        gguf_file = gguf_adapter_file(Path(path))
        peft = (
            read_gguf_adapter(gguf_file, self.model.config)
            if gguf_file is not None
            else read_peft_adapter(Path(path))
        )
        self._check_base(name, peft)
        self.slots.check(peft.modules)
        adapter = Adapter(
            name, peft.folder, peft.rank, peft.targets, peft.base_name,
            int(peft.digest[:15], 16),
        )  # fmt: skip
        self._evict(name)
        self.adapters[name] = adapter
        self._weights[name] = peft
        self.requests_total.setdefault(name, 0)
        return adapter

    def _check_base(self, name: str, peft: PeftAdapter) -> None:
        if peft.base_digest and self.base_digest and peft.base_digest != self.base_digest:
            raise UserInputError(
                f"adapter {name} was made for {peft.base_name or 'another base'} "
                f"({peft.base_digest[:19]}), not for {self.base_name or 'this model'} "
                f"({self.base_digest[:19]}); load it on its own base"
            )

    def get(self, name: str) -> Adapter:
        adapter = self.adapters.get(name)
        if adapter is None or name in self.removing:
            have = ", ".join(sorted(n for n in self.adapters if n not in self.removing))
            raise NotFoundError(
                f"no LoRA adapter named {name!r} is loaded"
                + (f"; loaded: {have}" if have else "; none is loaded (serve --lora NAME=PATH)")
            )
        return adapter

    def names(self) -> list[str]:
        return sorted(n for n in self.adapters if n not in self.removing)

    def remove(self, name: str, in_use: bool) -> None:
        """Unregister `name`; while requests use it (`in_use`) it only stops taking new
        ones, and `collect` drops it once they are done."""
        self.get(name)
        if in_use:
            self.removing.add(name)
            return
        self._drop(name)

    def collect(self, in_use: Iterable[str]) -> None:
        """Drop the adapters being removed that no request uses any more."""
        busy = set(in_use)
        for name in [n for n in self.removing if n not in busy]:
            self.removing.discard(name)
            self._drop(name)

    def _drop(self, name: str) -> None:
        self._evict(name)
        self.adapters.pop(name, None)
        self._weights.pop(name, None)

    def _evict(self, name: str) -> None:
        slot = self._resident.pop(name, None)
        if slot is not None:
            self.slots.clear(slot)

    # -- a step ---------------------------------------------------------------------
    def activate(self, names: set[str]) -> dict[str, int]:
        """Put every adapter in `names` into a slot (loading those that are not) and return
        name -> slot. len(names) must not pass max_loras (the scheduler sees to it)."""
        assert len(names) <= self.slots.max_loras, "more adapters in a step than slots"
        for name in names:
            if name in self._resident:
                self._resident.move_to_end(name)
                continue
            taken = set(self._resident.values())
            free = [s for s in range(self.slots.max_loras) if s not in taken]
            if free:
                slot = free[0]
            else:  # the least recently used adapter this step does not need
                victim = next(n for n in self._resident if n not in names)
                slot = self._resident.pop(victim)
            self.slots.load(slot, self._weights[name].modules)
            self._resident[name] = slot
        if names:
            self.model.adapters = self.slots
        return {name: self._resident[name] for name in names}

    @property
    def resident(self) -> list[str]:
        return list(self._resident)
