"""From a model on disk and a `--quant` mode to a ready Decoder: GGUF files are read with
their quantized blocks kept (so they can be re-packed, not expanded to fp32) whenever the
mode quantizes; "none" loads dense weights in the asked dtype. The one call the engine's
LLM, the bench and the CLI share. The network modules themselves never see a path."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from hearth.model.backend import BackendConfig, select_backend
from hearth.model.build import build_model, fuse_projections
from hearth.model.layers.decoder import Decoder
from hearth.model.layers.quant import ACT_DTYPE
from hearth.model.quant_build import build_quantized_model, check_quant_mode
from hearth.weights.loader import LoadedWeights, is_gguf_file, is_int4_checkpoint, load_weights


@dataclass(frozen=True)
class LoadedDecoder:
    """weights: config, (lazy) tensors and generation defaults as loaded; decoder: the
    network; dtype: its activation dtype (also the KV cache's)."""

    weights: LoadedWeights
    decoder: Decoder
    dtype: torch.dtype
    quant: str


# glibc mallopt parameter: allocations from this size on get their own mapping, returned
# to the system on free
_M_MMAP_THRESHOLD = -3
_LOAD_MMAP_THRESHOLD = 64 * 1024
_RUN_MMAP_THRESHOLD = 32 * 1024 * 1024  # the most glibc's own adaptive threshold reaches


@contextlib.contextmanager
def _compact_heap() -> Iterator[None]:
    """While loading, every buffer over 64 KiB is mapped on its own and unmapped when freed.
    Left to glibc's adaptive threshold, the converter's many short-lived multi-MB
    temporaries land on the heap between tensors that stay, and the freed holes are never
    given back: measured on SmolLM2 Q4_1, peak RSS over the interpreter's went from ~180 MB
    to ~365 MB. Afterwards the threshold is set where glibc's adaptation would have taken
    it (per-step buffers are reused from the heap), and the heap is trimmed. Elsewhere than
    glibc this does nothing."""
    try:
        libc = ctypes.CDLL(None)
        mallopt, trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        yield
        return
    mallopt(_M_MMAP_THRESHOLD, _LOAD_MMAP_THRESHOLD)
    try:
        yield
    finally:
        mallopt(_M_MMAP_THRESHOLD, _RUN_MMAP_THRESHOLD)
        trim(0)


def load_decoder(
    path: str | Path,
    quant: str = "auto",
    dtype: torch.dtype = torch.float32,
    backend: BackendConfig = BackendConfig(),
) -> LoadedDecoder:
    """Load `path` (a .gguf file or an HF folder) under `quant` (auto, none, int8, int4) on
    the backend `backend` selects. dtype applies to "none" (and to float weights auto leaves
    dense only as bf16); every quantized mode runs bfloat16 activations. Raises what
    load_weights/build_model raise."""
    mode = check_quant_mode(quant)
    ops = select_backend(backend)
    path = Path(path)
    is_gguf = path.is_file() and is_gguf_file(path)  # magic bytes: blobs have no suffix
    packed4 = not is_gguf and is_int4_checkpoint(path)  # GPTQ / AWQ: already 4-bit
    if mode == "auto" and not is_gguf and not packed4:
        mode = "none"  # auto keeps what the checkpoint has: dense float weights stay dense
    with _compact_heap():
        if mode == "none":
            weights = load_weights(path, dtype)
            decoder = fuse_projections(
                build_model(weights.config, weights.tensors, dtype, backend=ops)
            )
            return LoadedDecoder(weights, decoder, dtype, mode)
        if is_gguf:
            from hearth.weights.gguf import load_gguf

            weights = load_gguf(path, keep_quantized=True)
        else:
            weights = load_weights(path, torch.float32, keep_packed=packed4)
        decoder = build_quantized_model(weights.config, weights.tensors, mode, backend=ops)
        return LoadedDecoder(weights, decoder, ACT_DTYPE, mode)
