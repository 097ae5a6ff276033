"""The network a tuning run trains, built from a model file for its method: LoRA and DPO
over the base in `dtype` (bf16 weights stay bf16: no float32 master copy of a frozen
weight), the adapters float32 on top; `qlora`: the same adapters over the base built as
`--quant int4` serves it (a GGUF's Q4 blocks re-packed exactly, other weights quantized to
int4 groups of 32, the embeddings and LM head int8, activations bf16), so memory follows
the quantized file and the adapter learns against the weights it will run with; `full`:
every weight float32 and trainable. Knows nothing of data, the store or optimizers."""

from __future__ import annotations

from pathlib import Path

import torch

from hearth.model.build import build_model
from hearth.model.layers.decoder import Decoder
from hearth.model.layers.lora import apply_lora
from hearth.model.quant_build import build_quantized_model
from hearth.tune.train_config import TrainConfig
from hearth.weights.gguf import load_gguf
from hearth.weights.loader import is_gguf_file, is_int4_checkpoint, load_weights

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
    if config.method == "qlora":
        model = _quantized(path)
    else:
        weights = load_weights(path, dtype)
        model = build_model(weights.config, weights.tensors, dtype)
    apply_lora(model, config.lora, seed=config.seed)
    return model


def _quantized(path: Path) -> Decoder:
    """The int4 model, its q/k/v and gate/up left apart so each takes its own adapter."""
    if path.is_file() and is_gguf_file(path):
        weights = load_gguf(path, keep_quantized=True)
    else:
        weights = load_weights(path, torch.float32, keep_packed=is_int4_checkpoint(path))
    return build_quantized_model(weights.config, weights.tensors, "int4", fuse=False)
