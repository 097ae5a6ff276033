"""From a model on disk and a `--quant` mode to a ready Decoder: GGUF files are read with
their quantized blocks kept (so they can be re-packed, not expanded to fp32) whenever the
mode quantizes; "none" loads dense weights in the asked dtype. The one call the engine's
LLM, the bench and the CLI share. The network modules themselves never see a path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from hearth.model.build import build_model
from hearth.model.decoder import Decoder
from hearth.model.quant import ACT_DTYPE
from hearth.model.quant_build import build_quantized_model, check_quant_mode
from hearth.weights.loader import LoadedWeights, is_gguf_file, load_weights


@dataclass(frozen=True)
class LoadedDecoder:
    """weights: config, (lazy) tensors and generation defaults as loaded; decoder: the
    network; dtype: its activation dtype (also the KV cache's)."""

    weights: LoadedWeights
    decoder: Decoder
    dtype: torch.dtype
    quant: str


def load_decoder(
    path: str | Path, quant: str = "auto", dtype: torch.dtype = torch.float32
) -> LoadedDecoder:
    """Load `path` (a .gguf file or an HF folder) under `quant` (auto, none, int8, int4).
    dtype applies to "none" (and to float weights auto leaves dense only as bf16); every
    quantized mode runs bfloat16 activations. Raises what load_weights/build_model raise."""
    mode = check_quant_mode(quant)
    path = Path(path)
    is_gguf = path.is_file() and is_gguf_file(path)  # magic bytes: blobs have no suffix
    if mode == "auto" and not is_gguf:
        mode = "none"  # auto keeps what the checkpoint has: dense float weights stay dense
    if mode == "none":
        weights = load_weights(path, dtype)
        return LoadedDecoder(
            weights, build_model(weights.config, weights.tensors, dtype), dtype, mode
        )
    if is_gguf:
        from hearth.weights.gguf import load_gguf

        weights = load_gguf(path, keep_quantized=True)
    else:
        weights = load_weights(path, torch.float32)
    decoder = build_quantized_model(weights.config, weights.tensors, mode)
    return LoadedDecoder(weights, decoder, ACT_DTYPE, mode)
