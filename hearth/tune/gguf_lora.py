"""A LoRA adapter in llama.cpp's GGUF layout (what `llama-cli --lora`, llama-cpp-python's
`lora_path` and Ollama's `ADAPTER` load), as llama.cpp's convert_lora_to_gguf.py writes it:
general.type "adapter", adapter.type "lora", adapter.lora.alpha, and per adapted weight
`<gguf tensor name>.lora_a` (r, in) and `.lora_b` (out, r). llama.cpp scales by alpha / r,
so an rsLoRA adapter's B is multiplied by sqrt(r) to keep its scale. llama-architecture
files hold q/k rows permuted for llama.cpp's rope; B's rows get the same permutation.
Knows nothing of the store."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from hearth.errors import UnsupportedModelError
from hearth.tune.adapter_files import AdapterFiles

__all__ = ["GGUF_ARCHES", "llama_permute", "write_gguf_lora"]

# HF model_type -> llama.cpp architecture, for the dense families hearth tunes
GGUF_ARCHES = {
    "llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
    "gemma": "gemma", "gemma2": "gemma2", "gemma3": "gemma3", "gemma3_text": "gemma3",
    "phi3": "phi3",
}  # fmt: skip


def llama_permute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp's permute of Q/K rows (HF halves -> interleaved pairs, per head)."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def write_gguf_lora(
    adapter: AdapterFiles, arch: str, num_layers: int, num_heads: int, num_kv_heads: int, path: Path,
) -> None:  # fmt: skip
    """Write `adapter` for a base of llama.cpp architecture `arch` to `path`."""
    import gguf

    arch_enum = next((a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch), None)
    if arch_enum is None:
        raise UnsupportedModelError(
            f"llama.cpp has no architecture {arch!r}; export --format peft instead"
        )
    names = gguf.get_tensor_name_map(arch_enum, num_layers)
    lora = adapter.lora
    fold = math.sqrt(lora.rank) if lora.rslora else 1.0  # alpha / sqrt(r) = alpha / r * sqrt(r)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(lora.alpha))
    for key in sorted(k for k in adapter.weights if k.endswith(".lora_A.weight")):
        stem = key.removesuffix(".lora_A.weight")
        name = names.get_name(stem + ".weight", try_suffixes=(".weight",))
        if name is None:
            raise UnsupportedModelError(
                f"{stem} has no llama.cpp tensor name for {arch}; export --format peft"
            )
        a = adapter.weights[key].float()
        b = adapter.weights[f"{stem}.lora_B.weight"].float() * fold
        if arch == "llama" and stem.endswith(("q_proj", "k_proj")):
            b = llama_permute(b, num_heads if stem.endswith("q_proj") else num_kv_heads)
        writer.add_tensor(f"{name}.lora_a", a.contiguous().numpy())
        writer.add_tensor(f"{name}.lora_b", b.contiguous().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
