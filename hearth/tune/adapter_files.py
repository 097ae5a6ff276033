"""An adapter on disk in PEFT's layout, the one every runtime reads: `adapter_config.json`
(peft_type LORA, r, lora_alpha, target_modules, use_rslora, ...) and
`adapter_model.safetensors` with `base_model.model.<module path>.lora_A.weight` /
`.lora_B.weight` (no adapter name in the keys, as `save_pretrained` writes them). The base
is named portably: its store name (base_model_name_or_path) and sha256 digest (the
weights' metadata, `hearth.base_digest`), never a local path. Knows nothing of
training or the store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hearth.errors import CorruptModelError, UserInputError
from hearth.model.layers.lora import LoraConfig, LoraLinear, lora_layers, lora_state_dict

__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "AdapterFiles", "load_adapter", "save_adapter"]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PREFIX = "base_model.model."


@dataclass(frozen=True)
class AdapterFiles:
    """What a saved adapter says: its LoRA settings, weights under hearth's module paths,
    and the base it belongs to."""

    lora: LoraConfig
    weights: dict[str, torch.Tensor]
    base_name: str | None
    base_digest: str | None


def save_adapter(
    model: torch.nn.Module, lora: LoraConfig, folder: Path, base_name: str, base_digest: str,
    extra: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "use_rslora": lora.rslora,
        "target_modules": sorted(lora.targets),
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
        # portable: the store name and digest of the base, not a path on this machine
        "base_model_name_or_path": base_name,
    }
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    weights = {f"{_PREFIX}{k}": v.contiguous() for k, v in lora_state_dict(model).items()}
    # PEFT warns on keys its LoraConfig lacks, so hearth's own facts go in the weights'
    # metadata (string values only)
    metadata = {"format": "pt", "hearth.base": base_name, "hearth.base_digest": base_digest}
    metadata.update({f"hearth.{k}": str(v) for k, v in (extra or {}).items()})
    save_file(weights, str(folder / ADAPTER_WEIGHTS), metadata=metadata)


def load_adapter(folder: Path) -> AdapterFiles:
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
        raw = load_file(str(folder / ADAPTER_WEIGHTS))
    except FileNotFoundError as exc:
        raise UserInputError(
            f"{folder} is not an adapter folder ({exc.filename} is missing)"
        ) from exc
    except (json.JSONDecodeError, OSError) as exc:
        raise CorruptModelError(f"the adapter in {folder} cannot be read ({exc})") from exc
    if config.get("peft_type") != "LORA":
        raise UserInputError(
            f"{folder}: only LoRA adapters are supported, not {config.get('peft_type')}"
        )
    targets = config.get("target_modules") or []
    lora = LoraConfig(
        rank=int(config["r"]),
        alpha=float(config["lora_alpha"]),
        dropout=float(config.get("lora_dropout", 0.0)),
        rslora=bool(config.get("use_rslora", False)),
        targets=tuple(targets if isinstance(targets, list) else [targets]),
    )
    weights = {k.removeprefix(_PREFIX).replace(".default.", "."): v for k, v in raw.items()}
    with safe_open(str(folder / ADAPTER_WEIGHTS), "pt") as f:
        metadata = f.metadata() or {}
    base = metadata.get("hearth.base", config.get("base_model_name_or_path"))
    return AdapterFiles(lora, weights, base, metadata.get("hearth.base_digest"))


def load_adapter_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy saved A/B into the model's LoraLinear layers (made by apply_lora with the same
    config). Raises CorruptModelError naming a missing or extra tensor."""
    layers: dict[str, LoraLinear] = dict(lora_layers(model))
    expected = {f"{p}.lora_{x}.weight" for p in layers for x in "AB"}
    if set(weights) != expected:
        odd = sorted(set(weights) ^ expected)[:3]
        raise CorruptModelError(f"the adapter does not fit this model (e.g. {', '.join(odd)})")
    with torch.no_grad():
        for path, layer in layers.items():
            layer.lora_A.weight.copy_(weights[f"{path}.lora_A.weight"])
            layer.lora_B.weight.copy_(weights[f"{path}.lora_B.weight"])
