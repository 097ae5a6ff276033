"""A Hugging Face model folder on disk: `config.json`, `*.safetensors` (one file or shards
listed in `model.safetensors.index.json`) and `generation_config.json`. Tensors are
memory-mapped through safetensors' `safe_open` and read only when a name is looked up.
Knows nothing of model families (that is `families.py`) or of the network."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from hearth.errors import CorruptModelError, UnsupportedModelError

INDEX_FILE = "model.safetensors.index.json"
# generation_config.json keys that are bookkeeping, not defaults
_GENERATION_BOOKKEEPING = {"transformers_version", "_from_model_config"}


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptModelError(f"cannot read {path}: {exc}; re-download the model") from exc
    if not isinstance(data, dict):
        raise CorruptModelError(f"{path} is not a JSON object; re-download the model")
    return data


def read_config(folder: Path) -> dict[str, Any]:
    """The raw config.json dict."""
    if not is_hf_folder(folder):
        raise UnsupportedModelError(
            f"{folder} is not a Hugging Face model folder (no config.json); "
            "give a folder with config.json and *.safetensors, or a .gguf file"
        )
    return _read_json(folder / "config.json")


def read_generation_defaults(folder: Path) -> dict[str, Any]:
    """generation_config.json without bookkeeping keys; {} when the folder has none."""
    path = folder / "generation_config.json"
    if not path.is_file():
        return {}
    return {k: v for k, v in _read_json(path).items() if k not in _GENERATION_BOOKKEEPING}


def _shard_map(folder: Path) -> dict[str, Path]:
    """tensor name -> the safetensors file that holds it."""
    index = folder / INDEX_FILE
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CorruptModelError(f"{index} has no weight_map; re-download the model")
        files = {name: folder / str(file) for name, file in weight_map.items()}
        missing = sorted({str(p.name) for p in files.values() if not p.is_file()})
        if missing:
            raise CorruptModelError(
                f"{folder} lacks shards listed in {INDEX_FILE}: {', '.join(missing)}; "
                "the download is incomplete"
            )
        return files
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise UnsupportedModelError(
            f"{folder} has no *.safetensors files (PyTorch .bin checkpoints are not loaded; "
            "convert them to safetensors)"
        )
    files = {}
    for shard in shards:
        with safe_open(str(shard), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a Mapping)
                files[name] = shard
    return files


class SafetensorsTensors(Mapping[str, torch.Tensor]):
    """HF-named tensors of a folder, read lazily from memory-mapped shards and converted to
    `dtype` on access (floating tensors only; integer tensors keep their dtype)."""

    def __init__(self, folder: Path, dtype: torch.dtype = torch.float32) -> None:
        self.folder = folder
        self.dtype = dtype
        self._files = _shard_map(folder)
        self._handles: dict[Path, Any] = {}

    def _handle(self, path: Path) -> Any:
        if path not in self._handles:
            try:
                self._handles[path] = safe_open(str(path), framework="pt")
            except Exception as exc:  # safetensors raises its own error types
                raise CorruptModelError(f"cannot open {path}: {exc}") from exc
        return self._handles[path]

    def __getitem__(self, name: str) -> torch.Tensor:
        path = self._files[name]
        try:
            tensor = self._handle(path).get_tensor(name)
        except Exception as exc:
            raise CorruptModelError(f"cannot read tensor {name} from {path}: {exc}") from exc
        if tensor.is_floating_point() and tensor.dtype != self.dtype:
            tensor = tensor.to(self.dtype)
        return tensor

    def shape(self, name: str) -> tuple[int, ...]:
        """Shape without reading the data."""
        return tuple(self._handle(self._files[name]).get_slice(name).get_shape())

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, name: object) -> bool:
        return name in self._files


class PrefixedTensors(Mapping[str, torch.Tensor]):
    """`tensors` seen with `prefix` before every name."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], prefix: str) -> None:
        self.tensors = tensors
        self.prefix = prefix

    def __getitem__(self, name: str) -> torch.Tensor:
        if not name.startswith(self.prefix):
            raise KeyError(name)
        return self.tensors[name[len(self.prefix) :]]

    def shape(self, name: str) -> tuple[int, ...]:
        inner = self.tensors
        key = name.removeprefix(self.prefix)
        if isinstance(inner, SafetensorsTensors):
            return inner.shape(key)
        return tuple(inner[key].shape)

    def __iter__(self) -> Iterator[str]:
        return (self.prefix + name for name in self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def __contains__(self, name: object) -> bool:
        return (
            isinstance(name, str)
            and name.startswith(self.prefix)
            and name[len(self.prefix) :] in self.tensors
        )
