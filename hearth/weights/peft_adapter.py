"""A PEFT LoRA adapter folder read for serving: `adapter_config.json` (r, lora_alpha,
use_rslora, rank_pattern / alpha_pattern, target_modules, base_model_name_or_path) and
`adapter_model.safetensors` (`base_model.model.<module path>.lora_A.weight` (r, in) and
`.lora_B.weight` (out, r)), turned into one (A, B, scaling) per module path in HF naming.

What a plain LoRA serving road cannot honour is refused here with the reason (DoRA, LoRA
biases, fan_in_fan_out, modules_to_save, embedding adapters): silently dropping it would
give other numbers than PEFT. Knows nothing of models (model/layers/lora_slots.py checks
the paths and shapes against a base) or of training (tune/ writes these folders)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from hearth.errors import CorruptModelError, UnsupportedModelError, UserInputError

__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "LoraModule", "PeftAdapter", "read_peft_adapter"]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PREFIX = "base_model.model."
_KEY = re.compile(r"^(?P<path>.+)\.lora_(?P<part>[AB])(?:\.[^.]+)?\.weight$")


@dataclass(frozen=True)
class LoraModule:
    """One projection's update: delta(x) = scaling * (x @ a.T) @ b.T. a: (r, in), b: (out, r),
    float32."""

    a: torch.Tensor
    b: torch.Tensor
    scaling: float

    @property
    def rank(self) -> int:
        return int(self.a.shape[0])


@dataclass(frozen=True)
class PeftAdapter:
    """modules: HF module path (`model.layers.0.self_attn.q_proj`) -> its update. digest: a
    hex sha256 of the weights file (what the prefix cache keys the adapter by). base_name /
    base_digest: the base it says it was made for (base_digest only when hearth made it)."""

    folder: Path
    modules: dict[str, LoraModule]
    targets: tuple[str, ...]
    base_name: str | None
    base_digest: str | None
    digest: str

    @property
    def rank(self) -> int:
        return max((m.rank for m in self.modules.values()), default=0)


def read_peft_adapter(folder: Path) -> PeftAdapter:
    """Read and check a PEFT LoRA folder. Raises UserInputError when it is not one (naming
    the missing file), UnsupportedModelError for a LoRA variant the serving road does not
    compute, CorruptModelError for unreadable or inconsistent files."""
    folder = Path(folder).expanduser()
    missing = [n for n in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if not (folder / n).is_file()]
    if missing:
        raise UserInputError(
            f"{folder} is not a PEFT adapter folder ({', '.join(missing)} missing); give the "
            f"folder that holds {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}, or a GGUF LoRA file"
        )
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
        raw_bytes = (folder / ADAPTER_WEIGHTS).read_bytes()
        with safe_open(str(folder / ADAPTER_WEIGHTS), "pt") as f:
            metadata = f.metadata() or {}
            raw = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iter)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise CorruptModelError(f"the adapter in {folder} cannot be read ({exc})") from exc
    if not isinstance(config, dict):
        raise CorruptModelError(f"{folder / ADAPTER_CONFIG} is not a JSON object")
    _refuse_variants(folder, config)
    modules = _modules(folder, config, raw)
    targets = config.get("target_modules") or []
    return PeftAdapter(
        folder=folder,
        modules=modules,
        targets=tuple(targets if isinstance(targets, list) else [str(targets)]),
        base_name=metadata.get("hearth.base") or config.get("base_model_name_or_path"),
        base_digest=metadata.get("hearth.base_digest"),
        digest=hashlib.sha256(raw_bytes).hexdigest(),
    )


def _refuse_variants(folder: Path, config: dict[str, Any]) -> None:
    if config.get("peft_type", "LORA") != "LORA":
        raise UnsupportedModelError(
            f"{folder}: a {config.get('peft_type')} adapter; only LoRA adapters are served"
        )
    refusals = {
        "use_dora": "DoRA (use_dora) adapters are not served; merge it (`hearth merge`)",
        "fan_in_fan_out": "fan_in_fan_out (Conv1D) adapters are not served",
        "modules_to_save": "it carries full copies of modules (modules_to_save); merge it",
    }
    for key, why in refusals.items():
        if config.get(key):
            raise UnsupportedModelError(f"{folder}: {why}")
    if config.get("bias", "none") != "none":
        raise UnsupportedModelError(
            f"{folder}: LoRA biases (bias={config['bias']!r}) are not served"
        )


def _pattern(patterns: Any, path: str) -> Any:
    """PEFT's rank_pattern / alpha_pattern lookup: a key matches the module path's end."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", path):
            return value
    return None


def _modules(
    folder: Path, config: dict[str, Any], raw: dict[str, torch.Tensor]
) -> dict[str, LoraModule]:
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in raw.items():
        match = _KEY.match(key.removeprefix(_PREFIX))
        if match is None:
            raise UnsupportedModelError(
                f"{folder}: tensor {key} is not a LoRA A/B weight (embedding adapters and "
                "other extras are not served)"
            )
        parts.setdefault(match["path"], {})[match["part"]] = tensor
    if not parts:
        raise CorruptModelError(f"{folder / ADAPTER_WEIGHTS} holds no LoRA weights")
    try:
        alpha = float(config["lora_alpha"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptModelError(f"{folder / ADAPTER_CONFIG}: lora_alpha is missing") from exc
    rslora = bool(config.get("use_rslora", False))
    modules: dict[str, LoraModule] = {}
    for path, pair in sorted(parts.items()):
        a, b = pair.get("A"), pair.get("B")
        if a is None or b is None or a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise CorruptModelError(
                f"{folder}: {path} needs lora_A (r, in) and lora_B (out, r) of one rank"
            )
        rank = int(a.shape[0])
        module_alpha = _pattern(config.get("alpha_pattern"), path)
        scale_alpha = float(module_alpha) if module_alpha is not None else alpha
        scaling = scale_alpha / (math.sqrt(rank) if rslora else rank)
        modules[path] = LoraModule(a.float().contiguous(), b.float().contiguous(), scaling)
    return modules
