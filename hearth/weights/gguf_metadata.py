"""Read a GGUF file's header: every metadata key as plain Python, and where each tensor lies.

The header is parsed here with `struct` over a memory map, using the format constants of the
`gguf` package (value types, quant block sizes). `gguf.GGUFReader` parses the same header
correctly but builds one numpy view per array element: for Gemma 3's 262,144-token vocabulary
that is ~14 s on this machine, where this parser takes a fraction of a second. Tensor data is
never read here (see gguf.py, which de-quantizes it).

Knows nothing of models, configs or tokenizers: it only decodes bytes.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf.constants import (
    GGML_QUANT_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GGMLQuantizationType,
    GGUFValueType,
)

from hearth.errors import CorruptModelError, UserInputError

__all__ = ["GGUFHeader", "GGUFTensorInfo", "read_gguf_header", "read_gguf_metadata"]

_SUPPORTED_VERSIONS = (2, 3)

# Fixed-size scalar types: struct code, numpy dtype (little-endian, as GGUF stores them).
_SCALARS: dict[GGUFValueType, tuple[str, str]] = {
    GGUFValueType.UINT8: ("<B", "<u1"),
    GGUFValueType.INT8: ("<b", "<i1"),
    GGUFValueType.UINT16: ("<H", "<u2"),
    GGUFValueType.INT16: ("<h", "<i2"),
    GGUFValueType.UINT32: ("<I", "<u4"),
    GGUFValueType.INT32: ("<i", "<i4"),
    GGUFValueType.FLOAT32: ("<f", "<f4"),
    GGUFValueType.BOOL: ("<?", "<u1"),
    GGUFValueType.UINT64: ("<Q", "<u8"),
    GGUFValueType.INT64: ("<q", "<i8"),
    GGUFValueType.FLOAT64: ("<d", "<f8"),
}


@dataclass(frozen=True)
class GGUFTensorInfo:
    """Where one tensor lies in the file. `shape` is in torch/numpy order (outermost first),
    i.e. GGUF's `ne` dimensions reversed: a linear weight is (out_features, in_features)."""

    name: str
    ggml_type: GGMLQuantizationType
    shape: tuple[int, ...]
    offset: int  # absolute byte offset of the data in the file
    n_bytes: int

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


@dataclass(frozen=True)
class GGUFHeader:
    """A parsed GGUF header: metadata (keys in file order) and tensor locations."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: tuple[GGUFTensorInfo, ...]
    data_offset: int


class _Truncated(Exception):
    """Internal: the header asks for bytes beyond the end of the file."""


class _Cursor:
    """A read position over the mapped file; every read checks the bounds."""

    def __init__(self, buf: mmap.mmap | bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> int:
        start = self.pos
        if n < 0 or start + n > len(self.buf):
            raise _Truncated
        self.pos = start + n
        return start

    def unpack(self, fmt: str) -> Any:
        start = self.take(struct.calcsize(fmt))
        return struct.unpack_from(fmt, self.buf, start)[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        start = self.take(n)
        # surrogateescape keeps a vocabulary entry that is not valid UTF-8 recoverable
        # (s.encode("utf-8", "surrogateescape")) instead of failing the whole file.
        return bytes(self.buf[start : start + n]).decode("utf-8", "surrogateescape")

    def value(self, vtype: int) -> Any:
        gtype = GGUFValueType(vtype)
        if gtype == GGUFValueType.STRING:
            return self.string()
        if gtype == GGUFValueType.ARRAY:
            item_type = GGUFValueType(self.unpack("<I"))
            count = self.unpack("<Q")
            if item_type in _SCALARS:
                # numeric arrays (token scores, types, per-layer counts): one numpy read
                dtype = np.dtype(_SCALARS[item_type][1])
                start = self.take(count * dtype.itemsize)
                arr = np.frombuffer(self.buf, dtype=dtype, count=count, offset=start)
                if item_type == GGUFValueType.BOOL:
                    return [bool(x) for x in arr]
                return arr.tolist()
            if item_type == GGUFValueType.STRING:
                return [self.string() for _ in range(count)]
            return [self.value(item_type) for _ in range(count)]
        code = _SCALARS[gtype][0]
        return self.unpack(code)


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Parse the header of the GGUF file at `path` (metadata and tensor infos, no tensor data).

    Raises CorruptModelError naming the file when it is not GGUF, is truncated, or its tensor
    table points past the end of the file; UserInputError when there is no file at `path`.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            size = path.stat().st_size
            if size == 0:
                raise CorruptModelError(f"{path} is empty, not a GGUF file; re-download it")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(path, buf, size)
    except FileNotFoundError as exc:
        raise UserInputError(f"no GGUF file at {path}; check the path") from exc
    except OSError as exc:
        raise CorruptModelError(f"cannot read GGUF file {path}: {exc}") from exc


def read_gguf_metadata(path: str | Path) -> dict[str, Any]:
    """Every metadata key of the GGUF file at `path`, decoded to plain Python.

    Values are str, int, float, bool or (nested) lists of these, in file order; tokenizer
    arrays (`tokenizer.ggml.tokens`, `.scores`, `.token_type`, `.merges`) come back as lists.
    Tensor data is not read. Raises CorruptModelError naming the file for a truncated or
    non-GGUF file.
    """
    return read_gguf_header(path).metadata


def _parse(path: Path, buf: mmap.mmap, size: int) -> GGUFHeader:
    cur = _Cursor(buf)
    try:
        if size < 24 or cur.unpack("<I") != GGUF_MAGIC:
            raise CorruptModelError(
                f"{path} is not a GGUF file (no 'GGUF' magic at the start); "
                "check the path or re-download the model"
            )
        version = cur.unpack("<I")
        if version not in _SUPPORTED_VERSIONS:
            raise CorruptModelError(
                f"{path} is GGUF version {version}; hearth reads versions "
                f"{', '.join(map(str, _SUPPORTED_VERSIONS))} (little-endian) — re-convert it "
                "with a current llama.cpp"
            )
        n_tensors = cur.unpack("<Q")
        n_kv = cur.unpack("<Q")
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = cur.string()
            metadata[key] = cur.value(cur.unpack("<I"))
        raw_infos = []
        for _ in range(n_tensors):
            name = cur.string()
            n_dims = cur.unpack("<I")
            dims = [cur.unpack("<Q") for _ in range(n_dims)]
            ggml_type = GGMLQuantizationType(cur.unpack("<I"))
            rel_offset = cur.unpack("<Q")
            raw_infos.append((name, dims, ggml_type, rel_offset))
    except _Truncated:
        raise CorruptModelError(
            f"{path} is truncated: its GGUF header ends early ({size} bytes); re-download it"
        ) from None
    except ValueError as exc:  # unknown value type / quant type: garbage where a header should be
        raise CorruptModelError(
            f"{path} has a corrupt GGUF header ({exc}); re-download it"
        ) from exc

    alignment = metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise CorruptModelError(f"{path} has an invalid general.alignment {alignment!r}")
    data_offset = -(-cur.pos // alignment) * alignment

    tensors = []
    for name, dims, ggml_type, rel_offset in raw_infos:
        block_size, type_size = GGML_QUANT_SIZES[ggml_type]
        n_elements = int(np.prod(dims, dtype=np.int64)) if dims else 1
        if dims and dims[0] % block_size:
            raise CorruptModelError(
                f"{path}: tensor {name!r} has row length {dims[0]}, not a multiple of "
                f"{ggml_type.name}'s block size {block_size}"
            )
        n_bytes = n_elements // block_size * type_size
        offset = data_offset + rel_offset
        if offset + n_bytes > size:
            raise CorruptModelError(
                f"{path} is truncated: tensor {name!r} needs bytes up to {offset + n_bytes} "
                f"but the file has {size}; re-download it"
            )
        tensors.append(GGUFTensorInfo(name, ggml_type, tuple(reversed(dims)), offset, n_bytes))
    return GGUFHeader(path, version, metadata, tuple(tensors), data_offset)
