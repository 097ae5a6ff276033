"""The adapter folded into its base's weights, in the base's own format: a GGUF base gives a
GGUF (every tensor and metadata key copied; the adapted weights de-quantized, merged and
written as F32, q/k deltas permuted as llama.cpp lays a llama file out), an HF base gives
an HF folder (config and tokenizer files copied, model.safetensors with the merged
weights). `hearth merge` stores the result; `hearth export --format gguf|safetensors`
writes it to a folder. Knows nothing of the terminal."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from hearth.errors import UnsupportedModelError
from hearth.tune.adapter_files import AdapterFiles
from hearth.tune.gguf_lora import GGUF_ARCHES, llama_permute
from hearth.weights.loader import load_weights

__all__ = ["delta_weights", "full_deltas", "write_merged", "write_with_deltas"]


def delta_weights(adapter: AdapterFiles) -> dict[str, torch.Tensor]:
    """`<module path>.weight` -> scaling * B @ A (out, in) float32."""
    scaling = adapter.lora.scaling
    out: dict[str, torch.Tensor] = {}
    for key, a in adapter.weights.items():
        if key.endswith(".lora_A.weight"):
            stem = key.removesuffix(".lora_A.weight")
            b = adapter.weights[f"{stem}.lora_B.weight"]
            out[f"{stem}.weight"] = (b.float() @ a.float()) * scaling
    return out


def full_deltas(model: torch.nn.Module, base_path: Path) -> dict[str, torch.Tensor]:
    """A fully tuned model's change: `<name>` -> trained - base (float32, HF names and
    layout), for every weight that moved. Written through the merge path, base + change
    gives the trained weights in the base's own file format and layout (a GGUF's permuted
    q/k rows and offset norms included)."""
    base = load_weights(base_path, torch.float32).tensors
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if key in base and value.is_floating_point():
                delta = value.float() - base[key].float()
                if bool(delta.any()):
                    out[key] = delta
    return out


def write_merged(
    base_path: Path, base_format: str, adapter: AdapterFiles, output: Path, name: str
) -> Path:
    """Write the merged model under `output` (a folder); returns the file or folder to import."""
    return write_with_deltas(base_path, base_format, delta_weights(adapter), output, name)


def write_with_deltas(
    base_path: Path, base_format: str, deltas: dict[str, torch.Tensor], output: Path, name: str
) -> Path:
    """The base with `deltas` (HF name -> float32 change) added, in the base's format, under
    `output`; returns the file or folder to import."""
    if base_format == "gguf":
        target = output / "model.gguf"
        _merged_gguf(base_path, deltas, target, name)
        return target
    return _merged_hf(base_path, deltas, output / "model")


def _merged_hf(folder: Path, deltas: dict[str, torch.Tensor], target: Path) -> Path:
    from safetensors.torch import save_file

    target.mkdir(parents=True)
    for file in folder.iterdir():
        if file.is_file() and not file.name.endswith((".safetensors", ".safetensors.index.json")):
            shutil.copyfile(file, target / file.name)
    tensors = dict(load_weights(folder).tensors)
    missing = sorted(set(deltas) - set(tensors))
    if missing:
        raise UnsupportedModelError(
            f"the base checkpoint has no {missing[0]} to merge into (fused projections?)"
        )
    state = {}
    for key in tensors:
        value = tensors[key]
        if key in deltas:
            value = (value.float() + deltas[key]).to(value.dtype)
        state[key] = value.contiguous()
    save_file(state, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


def _merged_gguf(path: Path, deltas: dict[str, torch.Tensor], target: Path, name: str) -> None:
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(path))
    arch = str(reader.fields["general.architecture"].contents())
    config = load_weights(path).config
    arch_enum = next((a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch), None)
    if arch_enum is None or arch not in GGUF_ARCHES.values():
        raise UnsupportedModelError(
            f"merging into a {arch} GGUF is not supported; export --format peft"
        )
    names = gguf.get_tensor_name_map(arch_enum, config.num_hidden_layers)
    by_gguf: dict[str, torch.Tensor] = {}
    for key, delta in deltas.items():
        gguf_name = names.get_name(key, try_suffixes=(".weight",))
        if gguf_name is None:
            raise UnsupportedModelError(f"{key} has no llama.cpp tensor name for {arch}")
        if arch == "llama" and key.endswith(("q_proj.weight", "k_proj.weight")):
            heads = config.num_attention_heads if "q_proj" in key else config.num_key_value_heads
            delta = llama_permute(delta, heads)
        by_gguf[gguf_name] = delta  # get_name keeps the ".weight" suffix
    writer = gguf.GGUFWriter(str(target), arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        value = name if field.name == gguf.Keys.General.NAME else field.contents()
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, value_type, sub_type=sub_type)
    data = {}
    for tensor in reader.tensors:
        if tensor.name in by_gguf:
            base = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
            merged = base + by_gguf.pop(tensor.name).numpy().reshape(base.shape)
            data[tensor.name] = np.ascontiguousarray(merged, dtype=np.float32)
            writer.add_tensor_info(tensor.name, merged.shape, np.dtype(np.float32), merged.nbytes)
        else:
            data[tensor.name] = tensor.data
            writer.add_tensor_info(
                tensor.name,
                tensor.data.shape,
                tensor.data.dtype,
                tensor.data.nbytes,
                tensor.tensor_type,
            )
    if by_gguf:
        raise UnsupportedModelError(
            f"the base GGUF has no tensor {next(iter(by_gguf))} to merge into"
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(data[tensor.name], tensor_endianess=reader.endianess)
    writer.close()
