"""The network a tuning run trains, built from a model file for its method: LoRA and DPO
over the base in `dtype` (bf16 weights stay bf16: no float32 master copy of a frozen
weight), the adapters float32 on top; `full`: every weight float32 and trainable. Knows
nothing of data, the store or optimizers."""

from __future__ import annotations

from pathlib import Path

import torch

from hearth.model.build import build_model
from hearth.model.layers.decoder import Decoder
from hearth.model.layers.lora import apply_lora
from hearth.tune.train_config import TrainConfig
from hearth.weights.loader import load_weights

__all__ = ["training_model"]


def training_model(path: Path, config: TrainConfig, dtype: torch.dtype = torch.bfloat16) -> Decoder:
    """The model at `path` (GGUF file or HF folder) ready for `config.method`, its trainable
    parameters the only ones with requires_grad."""
    if config.method == "full":
        weights = load_weights(path, torch.float32)
        model = build_model(weights.config, weights.tensors, torch.float32)
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    weights = load_weights(path, dtype)
    model = build_model(weights.config, weights.tensors, dtype)
    apply_lora(model, config.lora, seed=config.seed)
    return model
