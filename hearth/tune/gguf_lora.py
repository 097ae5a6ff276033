"""A LoRA adapter in llama.cpp's GGUF layout (what `llama-cli --lora`, llama-cpp-python's
`lora_path` and Ollama's `ADAPTER` load), as llama.cpp's convert_lora_to_gguf.py writes it:
general.type "adapter", adapter.type "lora", adapter.lora.alpha, and per adapted weight
`<gguf tensor name>.lora_a` (r, in) and `.lora_b` (out, r). llama.cpp scales by alpha / r
(r from the tensor, llama-adapter.h get_scale) and the file has no rsLoRA flag, so an rsLoRA
adapter's B is multiplied by sqrt(r) to keep PEFT's alpha / sqrt(r). llama.cpp's own
convert_lora_to_gguf.py ignores use_rslora (it writes lora_alpha as given, so llama.cpp
applies such an adapter sqrt(r) times too weakly); hearth does not copy that. Folding into
B rather than into alpha keeps every module right when ranks differ between modules.
llama-architecture files hold q/k rows permuted for llama.cpp's rope; B's rows get the same
permutation. The base's store name and digest go in `hearth.base*` keys (llama.cpp ignores
them; hearth's GGUF adapter reader checks them). Knows nothing of the store."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from hearth.errors import UnsupportedModelError
from hearth.tune.adapter_files import AdapterFiles
from hearth.weights.gguf_adapter import BASE_DIGEST_KEY, BASE_KEY, GGUF_ARCHES

__all__ = ["GGUF_ARCHES", "llama_permute", "write_gguf_lora"]


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
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(lora.alpha))
    if adapter.base_name:
        writer.add_string(BASE_KEY, adapter.base_name)
    if adapter.base_digest:
        writer.add_string(BASE_DIGEST_KEY, adapter.base_digest)
    for key in sorted(k for k in adapter.weights if k.endswith(".lora_A.weight")):
        stem = key.removesuffix(".lora_A.weight")
        name = names.get_name(stem + ".weight", try_suffixes=(".weight",))
        if name is None:
            raise UnsupportedModelError(
                f"{stem} has no llama.cpp tensor name for {arch}; export --format peft"
            )
        a = adapter.weights[key].float()
        # alpha / sqrt(r) = alpha / r * sqrt(r), r this module's own rank
        fold = math.sqrt(a.shape[0]) if lora.rslora else 1.0
        b = adapter.weights[f"{stem}.lora_B.weight"].float() * fold
        if arch == "llama" and stem.endswith(("q_proj", "k_proj")):
            b = llama_permute(b, num_heads if stem.endswith("q_proj") else num_kv_heads)
        writer.add_tensor(f"{name}.lora_a", a.contiguous().numpy())
        writer.add_tensor(f"{name}.lora_b", b.contiguous().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
