"""A LoRA adapter in llama.cpp's GGUF layout read for serving, into the same per-module
(A, B, scaling) as a PEFT folder (peft_adapter.py), so everything that takes a PEFT folder
takes the .gguf too (what llama.cpp's convert_lora_to_gguf.py and `hearth export --format
gguf-lora` write, what `llama-cli --lora` and Ollama's ADAPTER load).

The layout (llama.cpp src/llama-adapter.cpp): general.type "adapter", adapter.type "lora",
adapter.lora.alpha, general.architecture the base's; per adapted weight `<gguf tensor
name>.lora_a` (r, in) and `.lora_b` (out, r) in numpy order, i.e. PEFT's own A and B. The
scale is llama.cpp's: alpha / r with r from the tensor (b's ne[0]), or 1 when alpha is 0 or
absent. A file records no rsLoRA flag: an rsLoRA adapter is right in llama.cpp only when its
writer folded sqrt(r) into B or alpha (hearth's exporter folds it into B), so reading by
llama.cpp's rule gives what llama.cpp computes from the same file. llama-architecture files
hold q/k rows permuted for llama.cpp's rope; B's rows are un-permuted with the base's head
counts, as gguf.py does for the base's own weights.

Knows nothing of the engine; model/layers/lora_slots.py checks paths and shapes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hearth.errors import CorruptModelError, UnsupportedModelError, UserInputError
from hearth.weights.config import ModelConfig
from hearth.weights.gguf import _unpermute
from hearth.weights.gguf_config import SUPPORTED_ARCHITECTURES
from hearth.weights.gguf_metadata import read_gguf_header
from hearth.weights.gguf_names import hf_name
from hearth.weights.gguf_quant import read_tensor
from hearth.weights.peft_adapter import ADAPTER_CONFIG, ADAPTER_WEIGHTS, LoraModule, PeftAdapter

__all__ = ["GGUF_ARCHES", "gguf_adapter_file", "gguf_architecture", "read_gguf_adapter"]

# HF model_type -> llama.cpp architecture, for the dense families hearth tunes and exports
GGUF_ARCHES = {
    "llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
    "gemma": "gemma", "gemma2": "gemma2", "gemma3": "gemma3", "gemma3_text": "gemma3",
    "phi3": "phi3",
}  # fmt: skip

# the keys hearth's exporter adds (llama.cpp ignores them): the base's store name and digest
BASE_KEY, BASE_DIGEST_KEY = "hearth.base", "hearth.base_digest"


def gguf_architecture(model_type: str) -> str | None:
    """The llama.cpp architecture of a base of HF `model_type`, or None."""
    if model_type in GGUF_ARCHES:
        return GGUF_ARCHES[model_type]
    if model_type == "mixtral":  # llama.cpp stores Mixtral as llama with experts
        return "llama"
    return next((a for a, t in SUPPORTED_ARCHITECTURES.items() if t == model_type), None)


def gguf_adapter_file(path: Path) -> Path | None:
    """The GGUF LoRA that `path` names: the .gguf file itself, or the one .gguf in a folder
    without PEFT files (a store model made by `hearth create` with a GGUF ADAPTER). None for
    anything else (read as a PEFT folder)."""
    path = Path(path).expanduser()
    if path.suffix == ".gguf" and not path.is_dir():
        return path  # a missing one too: the GGUF reader says there is no file
    if not path.is_dir() or any((path / n).is_file() for n in (ADAPTER_CONFIG, ADAPTER_WEIGHTS)):
        return None
    found = sorted(path.glob("*.gguf"))
    if len(found) > 1:
        raise UserInputError(
            f"{path} holds {len(found)} .gguf files ({', '.join(f.name for f in found)}); "
            "give the adapter's file itself"
        )
    return found[0] if found else None


def read_gguf_adapter(path: Path, base: ModelConfig) -> PeftAdapter:
    """Read and check the GGUF LoRA at `path` for a model of config `base`. Raises
    UserInputError when the file is not a LoRA adapter or is for another architecture
    (naming both), UnsupportedModelError for tensors the serving road does not compute,
    CorruptModelError for inconsistent ones."""
    header = read_gguf_header(path)
    meta = header.metadata
    kind, adapter_type = meta.get("general.type"), meta.get("adapter.type")
    if kind != "adapter" or adapter_type != "lora":
        what = f"a {adapter_type} adapter" if kind == "adapter" else "a model, not an adapter"
        raise UserInputError(
            f"{path} is {what} (general.type {kind!r}, adapter.type {adapter_type!r}); give a "
            "LoRA adapter GGUF (llama.cpp's convert_lora_to_gguf.py or `hearth export --format "
            "gguf-lora`), or load this file as a model"
        )
    if meta.get("adapter.alora.invocation_tokens"):
        raise UnsupportedModelError(
            f"{path}: an activated LoRA (aLoRA, on only after its invocation tokens) is not served"
        )
    arch, want = str(meta.get("general.architecture")), gguf_architecture(base.architecture)
    if arch != want:
        raise UserInputError(
            f"{path} is a LoRA for a {arch} model, but this model is {base.architecture} "
            f"(llama.cpp architecture {want}); load it on a base of its architecture"
        )
    alpha = float(meta.get("adapter.lora.alpha") or 0.0)
    mapped = np.memmap(path, dtype=np.uint8, mode="c")  # copy-on-write: the file stays as is
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for info in header.tensors:
        stem, _, part = info.name.rpartition(".lora_")
        target = hf_name(arch, stem) if part in ("a", "b") else None
        if target is None or not target.endswith(".weight"):
            raise UnsupportedModelError(
                f"{path}: tensor {info.name} is not a LoRA A/B of a projection hearth serves "
                "(embedding adapters, norms and other extras are not served)"
            )
        value = read_tensor(mapped, info, torch.float32)
        assert isinstance(value, torch.Tensor)  # keep_quantized=False de-quantizes
        parts.setdefault(target.removesuffix(".weight"), {})[part] = value
    if not parts:
        raise CorruptModelError(f"{path} holds no LoRA weights")
    modules = {m: _module(path, m, p, alpha, base, arch) for m, p in sorted(parts.items())}
    return PeftAdapter(
        folder=path,
        modules=modules,
        targets=tuple(sorted({m.rsplit(".", 1)[-1] for m in modules})),
        base_name=_text(meta.get(BASE_KEY)),
        base_digest=_text(meta.get(BASE_DIGEST_KEY)),
        digest=_sha256(path),
    )


def _module(
    path: Path, module: str, pair: dict[str, torch.Tensor], alpha: float, base: ModelConfig,
    arch: str,
) -> LoraModule:  # fmt: skip
    a, b = pair.get("a"), pair.get("b")
    if a is None or b is None or a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
        raise CorruptModelError(
            f"{path}: {module} needs lora_a (r, in) and lora_b (out, r) of one rank"
        )
    rank = int(b.shape[1])
    if arch == "llama" and module.endswith(("q_proj", "k_proj")):
        heads = base.num_attention_heads if module.endswith("q_proj") else base.num_key_value_heads
        if b.shape[0] % (2 * heads):
            raise UserInputError(
                f"the adapter's {module} has {b.shape[0]} rows, not {heads} heads' worth: it "
                "was made for another base model"
            )
        b = _unpermute(b, heads)
    scaling = alpha / rank if alpha else 1.0  # llama.cpp: no alpha means scale 1
    # copies: the file's memory map is not kept alive by an adapter held for later loads
    return LoraModule(a.float().clone(), b.float().contiguous().clone(), scaling)


def _text(value: Any) -> str | None:
    return str(value) if value else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
