"""A GGUF file → LoadedWeights: ModelConfig (metadata → HF config dict → `config_from_hf`) and
a lazy mapping of HF-named tensors, de-quantized tensor by tensor from the memory-mapped file
(or kept quantized for kernels that use the blocks).

Undone here so that the decoder sees exactly what an HF checkpoint holds:
- llama.cpp permutes the rows of Q and K of `llama`-architecture files (its RoPE rotates
  adjacent pairs, HF's rotates halves): the inverse permutation is applied;
- llama.cpp stores Gemma's RMSNorm weights as (1 + w): 1 is subtracted, as HF keeps w;
- stacked MoE experts (`ffn_*_exps`, one 3-D tensor) are split into per-expert weights;
- DeepSeek files from newer llama.cpp split `kv_b_proj` into `attn_k_b` (transposed) and
  `attn_v_b`: they are joined back;
- a fused `attn_qkv` (llama.cpp's `--fuse-qkv`) of a family whose HF checkpoints keep q, k
  and v apart is split back into them (and un-permuted in `llama` files).
Knows nothing of the network or of tokenizers (tokenizer/ reads the same metadata).
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from hearth.errors import CorruptModelError, UnsupportedModelError
from hearth.weights.families import config_from_hf
from hearth.weights.gguf_config import hf_config_from_gguf
from hearth.weights.gguf_metadata import GGUFTensorInfo, read_gguf_header
from hearth.weights.gguf_names import CONFIG_TENSORS, EXPERTS, hf_name
from hearth.weights.gguf_quant import GGUFQuantizedTensor, read_tensor
from hearth.weights.loader import LoadedWeights

__all__ = ["GGUFQuantizedTensor", "GGUFTensors", "load_gguf"]

_GEMMA = ("gemma", "gemma2", "gemma3")

Value = torch.Tensor | GGUFQuantizedTensor


@dataclass(frozen=True)
class _Source:
    """Where one HF tensor comes from and what to undo on the way."""

    infos: tuple[GGUFTensorInfo, ...]  # one tensor, or (k_b, v_b) for "join_kv_b"
    expert: int | None = None  # index into a stacked expert tensor
    transform: str = ""  # "", "unpermute", "norm_offset", "unsqueeze", "join_kv_b"
    heads: int = 0  # for "unpermute" / "join_kv_b"
    rows: tuple[int, int] | None = None  # [start, stop) of the stored rows (fused attn_qkv)


class GGUFTensors(Mapping[str, Value]):
    """HF-named tensors of a GGUF file, read on access.

    Float tensors come back in `dtype`; quantized ones de-quantized to `dtype`, or as
    GGUFQuantizedTensor when `keep_quantized` (only where no arithmetic is needed to undo
    llama.cpp's layout: Gemma norms and DeepSeek's split kv_b are always de-quantized).
    """

    def __init__(
        self,
        mapped: np.ndarray,
        sources: dict[str, _Source],
        dtype: torch.dtype,
        keep_quantized: bool,
    ) -> None:
        self._mapped = mapped
        self._sources = sources
        self.dtype = dtype
        self.keep_quantized = keep_quantized
        # the last shared tensor read (stacked experts, fused qkv): the HF tensors cut from
        # one are asked for in a row, so each is de-quantized once, not once per expert
        self._stack: tuple[str, Value] | None = None

    def shape(self, name: str) -> tuple[int, ...]:
        """Shape of the HF tensor without reading its data."""
        src = self._sources[name]
        if src.transform == "join_kv_b":
            k_b, v_b = src.infos
            return (k_b.shape[0] * (k_b.shape[2] + v_b.shape[1]), k_b.shape[1])
        shape = src.infos[0].shape
        if src.expert is not None:
            shape = shape[1:]
        if src.rows is not None:
            shape = (src.rows[1] - src.rows[0], *shape[1:])
        return (1, *shape) if src.transform == "unsqueeze" else shape

    def _read(self, info: GGUFTensorInfo, keep: bool) -> Value:
        return read_tensor(self._mapped, info, self.dtype, keep)

    def __getitem__(self, name: str) -> Value:
        src = self._sources[name]
        keep = self.keep_quantized and src.transform not in ("norm_offset", "join_kv_b")
        if src.transform == "join_kv_b":
            k_b, v_b = (cast(torch.Tensor, self._read(i, False)) for i in src.infos)
            return _join_kv_b(k_b, v_b, src.heads)
        info = src.infos[0]
        if src.expert is not None or src.rows is not None:
            if self._stack is None or self._stack[0] != info.name:
                self._stack = (info.name, self._read(info, keep))
            value = self._stack[1]
            if src.expert is not None:
                value = _index(value, src.expert)
            if src.rows is not None:
                start, stop = src.rows
                value = _apply_rows(value, lambda w: w[start:stop])
        else:
            value = self._read(info, keep)
        if src.transform == "unpermute":
            value = _apply_rows(value, lambda w: _unpermute(w, src.heads))
        elif src.transform == "norm_offset":
            value = cast(torch.Tensor, value) - 1.0
        elif src.transform == "unsqueeze":
            value = _apply_rows(value, lambda w: w.unsqueeze(0))
        return value

    def release_pages(self) -> None:
        """Drop the file's pages from this process's resident memory. Nothing is lost: a
        tensor read again faults them back in from the page cache. A loader converting
        tensor by tensor calls this as it goes, so its peak is not the whole file on top of
        the converted copy."""
        mapped = getattr(self._mapped, "_mmap", None)  # np.memmap's mmap.mmap
        if mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
            mapped.madvise(mmap.MADV_DONTNEED)

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)

    def __contains__(self, name: object) -> bool:
        return name in self._sources


def _index(value: Value, expert: int) -> Value:
    if isinstance(value, GGUFQuantizedTensor):
        return GGUFQuantizedTensor(value.ggml_type, value.data[expert], value.shape[1:])
    return value[expert]


def _apply_rows(value: Value, fn: Any) -> Value:
    """Apply a row-wise layout change to a float tensor or to a quantized tensor's blocks
    (rows hold whole blocks, so moving rows never splits one)."""
    if isinstance(value, GGUFQuantizedTensor):
        data = fn(value.data)
        shape = (*data.shape[:-1], value.shape[-1])
        return GGUFQuantizedTensor(value.ggml_type, data.contiguous(), shape)
    return fn(value)


def _unpermute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Inverse of llama.cpp's `permute` of Q/K rows: within each head, its row order
    (pairs interleaved) back to HF's (first halves, then second halves)."""
    rows = w.shape[0]
    # (heads, rows/heads/2, 2, ...) → (heads, 2, rows/heads/2, ...)
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _join_kv_b(k_b: torch.Tensor, v_b: torch.Tensor, heads: int) -> torch.Tensor:
    # k_b: (heads, kv_lora_rank, qk_nope) — stored transposed; v_b: (heads, v_head, kv_lora_rank)
    # → kv_b_proj (heads * (qk_nope + v_head), kv_lora_rank), per head [k rows; v rows]
    if k_b.dim() != 3 or v_b.dim() != 3 or k_b.shape[0] != heads or v_b.shape[0] != heads:
        raise CorruptModelError(
            f"attn_k_b {tuple(k_b.shape)} / attn_v_b {tuple(v_b.shape)} do not fit {heads} heads"
        )
    kv = torch.cat([k_b.transpose(1, 2), v_b], dim=1)
    return kv.reshape(-1, kv.shape[-1]).contiguous()


def _split_qkv(
    arch: str, hf_cfg: Mapping[str, Any], info: GGUFTensorInfo, layer: str, kind: str, path: Path
) -> dict[str, _Source]:
    # llama.cpp's converter concatenates rows [q; k; v] after its llama Q/K permutation
    head_dim = int(hf_cfg["head_dim"])
    heads, kv = int(hf_cfg["num_attention_heads"]), int(hf_cfg["num_key_value_heads"])
    parts = (("q_proj", heads), ("k_proj", kv), ("v_proj", kv))
    if sum(n * head_dim for _, n in parts) != info.shape[0]:
        raise CorruptModelError(
            f"{path}: {info.name} has {info.shape[0]} rows, not q/k/v of {heads}/{kv}/{kv} "
            f"heads of {head_dim}; the file is inconsistent — re-convert it"
        )
    sources, start = {}, 0
    for proj, n in parts:
        unpermute = arch == "llama" and proj != "v_proj"
        rows = (start, start + n * head_dim)
        sources[f"model.layers.{layer}.self_attn.{proj}.{kind}"] = _Source(
            (info,), None, "unpermute" if unpermute else "", n if unpermute else 0, rows
        )
        start = rows[1]
    return sources


def _plan(
    arch: str, hf_cfg: Mapping[str, Any], infos: Mapping[str, GGUFTensorInfo], path: Path
) -> dict[str, _Source]:
    """Every HF tensor name → its _Source. Unknown GGUF tensors are an error (a tensor we
    would ignore might change the numbers)."""
    flavour = "mixtral" if hf_cfg["model_type"] == "mixtral" else arch
    sources: dict[str, _Source] = {}
    split_kv: dict[str, dict[str, GGUFTensorInfo]] = {}
    for info in infos.values():
        if info.name in CONFIG_TENSORS:
            continue
        layer_part = info.name.split(".")
        if len(layer_part) == 4 and layer_part[2] in ("attn_k_b", "attn_v_b"):
            split_kv.setdefault(layer_part[1], {})[layer_part[2]] = info
            continue
        if len(layer_part) == 4 and layer_part[2] == "attn_qkv" and arch != "phi3":
            sources.update(_split_qkv(arch, hf_cfg, info, layer_part[1], layer_part[3], path))
            continue
        target = hf_name(flavour, info.name)
        if target is None:
            raise UnsupportedModelError(
                f"{path}: GGUF tensor {info.name!r} has no known meaning for architecture "
                f"{arch!r}; hearth cannot load this file faithfully"
            )
        transform, heads = "", 0
        if arch == "llama" and (".attn_q." in info.name or ".attn_k." in info.name):
            transform = "unpermute"
            key = "num_attention_heads" if ".attn_q." in info.name else "num_key_value_heads"
            heads = int(hf_cfg[key])
        elif arch in _GEMMA and info.name.endswith("norm.weight"):
            transform = "norm_offset"
        elif info.name.endswith("ffn_gate_inp_shexp.weight") and len(info.shape) == 1:
            transform = "unsqueeze"  # HF's shared_expert_gate is a (1, hidden) linear
        if EXPERTS in target:
            for e in range(info.shape[0]):
                sources[target.format(expert=e)] = _Source((info,), e, transform, heads)
        else:
            sources[target] = _Source((info,), None, transform, heads)
    for layer, parts in split_kv.items():
        name = f"model.layers.{layer}.self_attn.kv_b_proj.weight"
        if name in sources:
            continue  # the file also kept the joined tensor
        if set(parts) != {"attn_k_b", "attn_v_b"}:
            raise CorruptModelError(f"{path}: layer {layer} has {sorted(parts)} but not both")
        heads = int(hf_cfg["num_attention_heads"])
        sources[name] = _Source((parts["attn_k_b"], parts["attn_v_b"]), None, "join_kv_b", heads)
    return sources


def load_gguf(
    path: str | Path, dtype: torch.dtype = torch.float32, keep_quantized: bool = False
) -> LoadedWeights:
    """Load a GGUF file: ModelConfig, HF-named tensors (lazy; float tensors in `dtype`;
    quantized ones de-quantized to `dtype`, or GGUFQuantizedTensor with keep_quantized), the
    HF-style config dict (`raw_config`) and generation defaults (bos/eos/pad ids).

    Raises CorruptModelError for a truncated / non-GGUF file, UnsupportedModelError naming
    an unsupported architecture (with the supported list), setting, tensor or quant type.
    """
    path = Path(path)
    header = read_gguf_header(path)
    infos = {info.name: info for info in header.tensors}
    mapped = np.memmap(path, dtype=np.uint8, mode="c")  # copy-on-write: never touches the file

    def read_floats(name: str) -> np.ndarray:
        if name not in infos:
            raise CorruptModelError(f"{path} lacks tensor {name!r}")
        value = read_tensor(mapped, infos[name], torch.float64, keep_quantized=False)
        return cast(torch.Tensor, value).numpy()

    meta = header.metadata
    hf_cfg = hf_config_from_gguf(meta, infos, read_floats)
    config = config_from_hf(hf_cfg)
    sources = _plan(str(meta["general.architecture"]), hf_cfg, infos, path)
    tensors = GGUFTensors(mapped, sources, dtype, keep_quantized)
    defaults = {
        key: meta[f"tokenizer.ggml.{gguf_key}"]
        for key, gguf_key in (
            ("bos_token_id", "bos_token_id"),
            ("eos_token_id", "eos_token_id"),
            ("pad_token_id", "padding_token_id"),
        )
        if f"tokenizer.ggml.{gguf_key}" in meta
    }
    # the model's own sampling recommendations (llama.cpp writes `general.sampling.temp`,
    # `.top_k`, `.top_p`, `.min_p`, `.penalty_repeat`), as generation_config.json carries them
    defaults |= {
        key.removeprefix("general.sampling."): value
        for key, value in meta.items()
        if key.startswith("general.sampling.")
    }
    # LoadedWeights declares torch tensors; with keep_quantized some values are
    # GGUFQuantizedTensor, which the quantized-kernel loader asks for on purpose.
    return LoadedWeights(
        config=config,
        tensors=cast(Mapping[str, torch.Tensor], tensors),
        generation_defaults=defaults,
        raw_config=hf_cfg,
    )
