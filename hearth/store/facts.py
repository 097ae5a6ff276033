"""The model-card facts the store keeps per model (architecture, size, quantization,
context, license, chat template), and the license id from those facts through
`hearth.licenses.detect`. The readers for each format live in `gguf_file.py` and
`hf_folder.py`. Knows nothing of blobs or names."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelFacts:
    format: str  # "gguf" | "hf"
    architecture: str  # GGUF general.architecture / HF model_type, e.g. "llama"
    parameter_count: int
    quantization: str  # "Q4_1", "Q4_K_M", "BF16", ...
    context_length: int | None
    license_raw: str | None  # what the file or card says, verbatim
    chat_template: str | None
    license_inputs: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.parameter_count < 0:
            raise ValueError(f"parameter_count must be >= 0, got {self.parameter_count}")


@dataclass(frozen=True)
class LicenseResult:
    license_id: str | None
    signals_json: str  # JSON list of {"source", "license_id", "raw"}


def detect_license(facts: ModelFacts) -> LicenseResult:
    """License id and signals through `hearth.licenses.detect` (strictest signal wins)."""
    # same rank as the store; imported here so `hearth --help` does not load the table
    from hearth.licenses.detect import detect_license as detector

    result = detector(**_detector_args(facts.license_inputs))
    # a JSON list of {"source", "license_id", "raw"}: what `hearth license NAME` reads back
    return LicenseResult(result.license_id or None, json.dumps(_plain(list(result.signals))))


def _detector_args(inputs: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("gguf_metadata", "card_text", "license_text", "catalog_license")
    return {k: inputs[k] for k in keys if inputs.get(k) is not None}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
