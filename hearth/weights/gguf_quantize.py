"""Quantize a GGUF file into another GGUF file llama.cpp loads (`hearth quantize`): the
metadata copied, each weight matrix stored at the type llama.cpp's `llama_tensor_get_type`
would give it for the chosen file type, 1-D tensors (norms, biases) kept F32. Q4_0 / Q4_1 /
Q5_0 / Q5_1 / Q8_0 go through `gguf.quants.quantize`; the K-quants through
`hearth.weights.kquants`. A source that is already quantized is de-quantized first, only when
asked (`allow_requantize`), because the result carries both roundings. Knows nothing of the
store or of models' networks."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType, quants
from gguf.constants import GGML_QUANT_VERSION, GGMLQuantizationType

from hearth.errors import UserInputError
from hearth.weights.kquants import QK_K, QUANTIZERS

T = GGMLQuantizationType


@dataclass(frozen=True)
class FileType:
    """A `--type`: the base tensor type and llama.cpp's general.file_type number."""

    base: GGMLQuantizationType
    ftype: LlamaFileType
    mix: bool  # the _M mixes give some tensors more bits


FILE_TYPES: dict[str, FileType] = {
    "Q8_0": FileType(T.Q8_0, LlamaFileType.MOSTLY_Q8_0, False),
    "Q4_0": FileType(T.Q4_0, LlamaFileType.MOSTLY_Q4_0, False),
    "Q4_1": FileType(T.Q4_1, LlamaFileType.MOSTLY_Q4_1, False),
    "Q4_K_M": FileType(T.Q4_K, LlamaFileType.MOSTLY_Q4_K_M, True),
    "Q5_K_M": FileType(T.Q5_K, LlamaFileType.MOSTLY_Q5_K_M, True),
    "Q6_K": FileType(T.Q6_K, LlamaFileType.MOSTLY_Q6_K, False),
}
FLOATS = (T.F32, T.F16, T.BF16)
# a K-quant needs rows that are whole 256-value super-blocks; llama.cpp falls back to these
_K_FALLBACK = {T.Q4_K: T.Q5_0, T.Q5_K: T.Q5_1, T.Q6_K: T.Q8_0}
_LAYER = re.compile(r"blk\.(\d+)\.")

Progress = Callable[[int, int], None]


def _use_more_bits(i: int, n: int) -> bool:
    # llama.cpp: the first and last eighth of the layers, and every third in between
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def tensor_type(
    name: str, shape: tuple[int, ...], file_type: FileType, num_layers: int, tied: bool
) -> GGMLQuantizationType:
    """The type llama.cpp's quantizer gives this tensor (`shape` in numpy order: the last
    dimension is the row length). `tied`: the file has no output.weight (the embedding is
    the output too)."""
    if len(shape) < 2 or not name.endswith(".weight"):
        return T.F32
    cols = shape[-1]
    kind = file_type.base
    layer = _LAYER.match(name)
    if name == "output.weight" or (tied and name == "token_embd.weight"):
        # the output projection sets every token's logit: llama.cpp keeps it at 6 bits
        if cols % QK_K != 0:
            return T.Q8_0
        return kind if kind == T.Q8_0 else T.Q6_K
    if file_type.mix and layer is not None:
        i = int(layer.group(1))
        if (".attn_v." in name or ".ffn_down." in name) and _use_more_bits(i, num_layers):
            kind = T.Q6_K
    if kind in _K_FALLBACK and cols % QK_K != 0:
        kind = _K_FALLBACK[kind]
    if cols % quants.GGML_QUANT_SIZES[kind][0] != 0:
        return T.F16
    return kind


def _quantize(values: np.ndarray, kind: GGMLQuantizationType) -> np.ndarray:
    """float32 rows (..., cols) -> the bytes of `kind` (..., row bytes)."""
    if kind == T.F32:
        return values.astype(np.float32)
    if kind == T.F16:
        return values.astype(np.float16)
    if kind.name in QUANTIZERS:
        block, size = quants.GGML_QUANT_SIZES[kind]
        rows = values.reshape(-1, values.shape[-1])
        data = QUANTIZERS[kind.name](np.ascontiguousarray(rows, dtype=np.float32).reshape(-1))
        return data.reshape(*values.shape[:-1], values.shape[-1] // block * size)
    return quants.quantize(values.astype(np.float32), kind)


def source_quantization(reader: GGUFReader) -> str | None:
    """The quantized type of the source's weight matrices (None for a float file)."""
    kinds = {
        t.tensor_type.name
        for t in reader.tensors
        if len(t.shape) >= 2 and t.tensor_type not in FLOATS
    }
    return "/".join(sorted(kinds)) or None


def quantize_gguf(
    src: Path,
    dst: Path,
    type_name: str,
    *,
    allow_requantize: bool = False,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Write `dst` from `src` at `type_name`; returns how many tensors got each type."""
    file_type = FILE_TYPES.get(type_name.upper())
    if file_type is None:
        raise UserInputError(
            f"unknown quantization type '{type_name}'; use one of {', '.join(FILE_TYPES)}"
        )
    reader = GGUFReader(src)
    already = source_quantization(reader)
    if already and not allow_requantize:
        raise UserInputError(
            f"{src.name} is already quantized ({already}); quantizing it again to {type_name} "
            "de-quantizes it and rounds a second time, so the result keeps all of the "
            f"{already} error and adds {type_name}'s own (it is never better than the source, "
            "even at more bits). Quantize the float weights instead, or pass "
            "--allow-requantize to accept the loss"
        )
    arch_field = reader.fields["general.architecture"]
    arch = str(arch_field.contents())
    writer = GGUFWriter(dst, arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in (
            "general.architecture",
            "general.file_type",
            "general.quantization_version",
        ):
            continue
        sub = field.types[-1] if field.types[0] == GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), field.types[0], sub)
    writer.add_file_type(int(file_type.ftype))
    writer.add_quantization_version(GGML_QUANT_VERSION)
    names = {t.name for t in reader.tensors}
    tied = "output.weight" not in names
    num_layers = 1 + max((int(m.group(1)) for n in names if (m := _LAYER.match(n))), default=0)
    counts: dict[str, int] = {}
    for done, tensor in enumerate(reader.tensors):
        shape = tuple(int(d) for d in reversed(tensor.shape))  # numpy order
        values = quants.dequantize(tensor.data, tensor.tensor_type).reshape(shape)
        kind = tensor_type(tensor.name, shape, file_type, num_layers, tied)
        data = _quantize(values, kind)
        # quantized data goes in as its bytes (rows, row bytes); gguf derives the shape
        writer.add_tensor(tensor.name, data, raw_dtype=None if kind in FLOATS else kind)
        counts[kind.name] = counts.get(kind.name, 0) + 1
        if progress:
            progress(done + 1, len(reader.tensors))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return counts


def quantize_source(
    src: Path, dst: Path, type_name: str, *, allow_requantize: bool = False
) -> None:
    """`quantize_gguf` for a GGUF file, or an HF folder converted to a float GGUF first (in
    a file beside `dst`, removed after)."""
    if type_name.upper() not in FILE_TYPES:
        raise UserInputError(
            f"unknown quantization type '{type_name}'; use one of {', '.join(FILE_TYPES)}"
        )
    if not src.is_dir():
        quantize_gguf(src, dst, type_name, allow_requantize=allow_requantize)
        return
    from hearth.weights.hf_to_gguf import convert_hf_folder

    floats = dst.with_name(dst.name + ".f32")
    try:
        convert_hf_folder(src, floats)
        quantize_gguf(floats, dst, type_name, allow_requantize=allow_requantize)
    finally:
        floats.unlink(missing_ok=True)
