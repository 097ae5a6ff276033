"""The LoRA adapters the server answers to by name (`hearth serve BASE --lora NAME=PATH`, or
hot-loaded through vLLM's `POST /v1/load_lora_adapter`): which base each runs on and where
its files are. A request whose `model` is an adapter's name runs on its base's engine with
that adapter (the pool resolves it); the engine holds the tensors. Knows nothing of
tensors or routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hearth.errors import ConflictError, NotFoundError, UserInputError

__all__ = ["AdapterSpec", "ServedAdapters", "parse_lora_option"]


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    base: str  # the base's store name (record.name) once known, else as given
    path: Path
    created: datetime = field(default_factory=lambda: datetime.now(UTC))


def parse_lora_option(text: str) -> tuple[str, str]:
    """`NAME=PATH` (as vLLM's --lora-modules) -> (name, path); a bare PATH is named after
    its folder (or .gguf file)."""
    name, sep, path = text.partition("=")
    if not sep:
        path, file = text, Path(text).expanduser().resolve()
        name = file.stem if file.suffix == ".gguf" else file.name
    if not name or not path:
        raise UserInputError(f"--lora {text!r}: give NAME=PATH (a PEFT adapter folder or a GGUF LoRA file)")
    return name, path


class ServedAdapters:
    def __init__(self) -> None:
        self.specs: dict[str, AdapterSpec] = {}

    def add(self, spec: AdapterSpec) -> None:
        if spec.name in self.specs:
            raise ConflictError(
                f"a LoRA adapter named {spec.name!r} is already loaded; unload it first "
                "(POST /v1/unload_lora_adapter) or pick another name"
            )
        self.specs[spec.name] = spec

    def get(self, name: str) -> AdapterSpec | None:
        return self.specs.get(name)

    def pop(self, name: str) -> AdapterSpec:
        spec = self.specs.pop(name, None)
        if spec is None:
            raise NotFoundError(f"no LoRA adapter named {name!r} is loaded; {self.listing()}")
        return spec

    def of_base(self, base: str) -> dict[str, Path]:
        return {s.name: s.path for s in self.specs.values() if s.base == base}

    def listing(self) -> str:
        names = sorted(self.specs)
        return f"loaded adapters: {', '.join(names)}" if names else "no adapter is loaded"
