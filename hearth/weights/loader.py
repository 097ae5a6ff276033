"""One entry point from a model on disk to what the network needs: `load_weights(path)`
dispatches on the format (a Hugging Face folder or a GGUF file) and returns the ModelConfig,
the tensors under their HF checkpoint names, and the generation defaults. Knows nothing of
the network itself (model/ builds it from this)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hearth.errors import OptionalDependencyError, UnsupportedModelError
from hearth.weights import hf
from hearth.weights.config import ModelConfig
from hearth.weights.families import config_from_hf


@dataclass(frozen=True)
class LoadedWeights:
    """config: the network's shape and family features.
    tensors: HF checkpoint name -> tensor (lazily read; floating tensors in the asked dtype).
    generation_defaults: generation_config.json (HF) or the GGUF equivalent, as a dict."""

    config: ModelConfig
    tensors: Mapping[str, torch.Tensor]
    generation_defaults: dict[str, Any] = field(default_factory=dict)
    raw_config: dict[str, Any] = field(default_factory=dict)  # config.json as read


def load_hf_folder(
    folder: Path, dtype: torch.dtype = torch.float32, keep_packed: bool = False
) -> LoadedWeights:
    """`keep_packed`: a GPTQ/AWQ checkpoint's weights stay 4-bit (PackedInt4) for the int4
    kernels; otherwise they are de-quantized to `dtype`."""
    from hearth.weights.gptq_awq import Int4CheckpointTensors, int4_format

    raw = hf.read_config(folder)
    config = config_from_hf(raw)
    tensors: Mapping[str, Any] = hf.SafetensorsTensors(folder, dtype)
    fmt = int4_format(raw)
    if fmt is not None:
        tensors = Int4CheckpointTensors(tensors, fmt, None if keep_packed else dtype)
    return LoadedWeights(
        config=config,
        tensors=tensors,
        generation_defaults=hf.read_generation_defaults(folder),
        raw_config=raw,
    )


def is_int4_checkpoint(path: Path) -> bool:
    """An HF folder whose config.json names GPTQ or AWQ quantization."""
    from hearth.weights.gptq_awq import int4_format

    return hf.is_hf_folder(path) and int4_format(hf.read_config(path)) is not None


def is_gguf_file(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"GGUF"


def load_weights(
    path: str | Path, dtype: torch.dtype = torch.float32, keep_packed: bool = False
) -> LoadedWeights:
    """Load a model from an HF folder (config.json + *.safetensors) or a .gguf file.
    `keep_packed`: GPTQ/AWQ weights stay 4-bit (see load_hf_folder)."""
    path = Path(path)
    if hf.is_hf_folder(path):
        return load_hf_folder(path, dtype, keep_packed)
    # by magic bytes, not suffix: store blobs are named by digest and have no extension
    if path.is_file() and is_gguf_file(path):
        try:
            from hearth.weights.gguf import load_gguf  # type: ignore[attr-defined,unused-ignore]
        except ImportError as exc:  # the GGUF loader lands in its own change
            raise OptionalDependencyError(
                f"cannot load {path}: this hearth build has no GGUF loader "
                f"(hearth.weights.gguf.load_gguf is missing: {exc})"
            ) from exc
        loaded: LoadedWeights = load_gguf(path, dtype=dtype)
        return loaded
    if not path.exists():
        raise UnsupportedModelError(f"{path} does not exist; give an HF folder or a .gguf file")
    raise UnsupportedModelError(
        f"{path} is neither a Hugging Face folder (with config.json) nor a .gguf file"
    )
