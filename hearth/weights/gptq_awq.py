"""GPTQ and AWQ 4-bit checkpoints (safetensors `qweight` / `qzeros` / `scales` [/ `g_idx`],
as transformers loads them through gptqmodel / autoawq) unpacked into the int4 parts hearth's
kernels take: codes q (N, K) in 0..15 and, per group of `group_size` inputs and per output,
(scale, offset) with w = (q - 8) * scale + offset, which is exactly both formats'
w = scale * (q - zero) with offset = scale * (8 - zero). Knows nothing of models or kernels.

Packings (int32 words, eight 4-bit values, lowest bits first):
- GPTQ: qweight (K / 8, N) packed along the inputs; qzeros (G, N / 8) packed along the
  outputs, holding zero - 1 in the classic ("v1") format gptqmodel still writes to disk;
  scales (G, N); g_idx (K,) the group of each input (act-order checkpoints permute it;
  those load dense, see `dequantize_gptq_act_order`).
- AWQ (GEMM): qweight (K, N / 8) and qzeros (G, N / 8) packed along the outputs in the
  order 0, 2, 4, 6, 1, 3, 5, 7 within each word; zeros stored as they are; scales (G, N).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from hearth.errors import UnsupportedModelError

_SHIFTS = torch.arange(0, 32, 4, dtype=torch.int32)
# nibble i of an AWQ word holds output column AWQ_ORDER[i] of its eight
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def _unpack_last(packed: torch.Tensor) -> torch.Tensor:
    """(..., M) int32 -> (..., 8 M) nibbles, word by word, lowest bits first."""
    nibbles = (packed.to(torch.int32)[..., None] >> _SHIFTS) & 0xF
    return nibbles.reshape(*packed.shape[:-1], packed.shape[-1] * 8)


def _awq_columns(values: torch.Tensor) -> torch.Tensor:
    """Undo AWQ's order within each word of eight output columns."""
    words = values.reshape(*values.shape[:-1], -1, 8)
    out = torch.empty_like(words)
    for i, col in enumerate(AWQ_ORDER):
        out[..., col] = words[..., i]
    return out.reshape(values.shape)


def int4_parts(
    codes_kn: torch.Tensor, zeros: torch.Tensor, scales: torch.Tensor, group_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(q (N, K) int32, scales_and_zeros (G, N, 2) float32) from codes (K, N), zeros (G, N)
    and scales (G, N)."""
    k, n = codes_kn.shape
    if group_size not in (32, 64, 128, 256) or k % group_size:
        raise UnsupportedModelError(
            f"group_size {group_size} with {k} inputs: hearth's int4 kernels take groups of "
            "32, 64, 128 or 256 that divide the inputs"
        )
    if tuple(scales.shape) != (k // group_size, n) or tuple(zeros.shape) != tuple(scales.shape):
        raise UnsupportedModelError(
            f"scales {tuple(scales.shape)} / zeros {tuple(zeros.shape)} do not fit "
            f"{k} inputs x {n} outputs in groups of {group_size}"
        )
    s = scales.float()
    offset = s * (8 - zeros.float())
    return codes_kn.t().contiguous().to(torch.int32), torch.stack([s, offset], dim=-1)


def unpack_gptq(
    qweight: torch.Tensor,
    qzeros: torch.Tensor,
    scales: torch.Tensor,
    group_size: int,
    g_idx: torch.Tensor | None = None,
    *,
    zero_offset: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Int4 parts of a GPTQ 4-bit linear; `zero_offset` 1 for the stored v1 format (0: v2).
    Act-order checkpoints (g_idx not in input order) are refused: the kernels' groups are
    runs of consecutive inputs."""
    codes = _unpack_last(qweight.t().contiguous()).t()  # (K, N)
    k = codes.shape[0]
    if is_act_order(g_idx, k, group_size):
        raise UnsupportedModelError(
            "this GPTQ checkpoint uses act-order (desc_act: g_idx permutes the groups); "
            "hearth's int4 kernels run groups of consecutive inputs: use "
            "dequantize_gptq_act_order (the checkpoint loader does)"
        )
    # v1 packs (zero - 1) & 0xF, so a zero of 0 is stored as 15: the mask undoes the wrap
    zeros = (_unpack_last(qzeros) + zero_offset) & 0xF
    return int4_parts(codes, zeros, scales, group_size)


def is_act_order(g_idx: torch.Tensor | None, k: int, group_size: int) -> bool:
    """g_idx is not the in-order map input -> input // group_size (desc_act checkpoints)."""
    if g_idx is None:
        return False
    return not torch.equal(g_idx.to(torch.int64), torch.arange(k) // group_size)


def dequantize_gptq_act_order(
    qweight: torch.Tensor,
    qzeros: torch.Tensor,
    scales: torch.Tensor,
    g_idx: torch.Tensor,
    *,
    zero_offset: int = 1,
) -> torch.Tensor:
    """(N, K) float32 w[n, k] = scales[g, n] * (q[k, n] - zero[g, n]) with g = g_idx[k]: an
    act-order (desc_act) GPTQ linear, whose groups are not runs of consecutive inputs, as the
    dense weight it stands for (hearth's int4 kernels cannot take it packed)."""
    codes = _unpack_last(qweight.t().contiguous()).t()  # (K, N)
    zeros = (_unpack_last(qzeros) + zero_offset) & 0xF  # (G, N)
    g = g_idx.to(torch.int64)
    if g.shape != (codes.shape[0],) or int(g.min()) < 0 or int(g.max()) >= scales.shape[0]:
        raise UnsupportedModelError(
            f"g_idx {tuple(g_idx.shape)} does not map {codes.shape[0]} inputs to "
            f"{scales.shape[0]} groups"
        )
    w = scales.float()[g] * (codes.float() - zeros[g].float())  # (K, N)
    return w.t().contiguous()


def unpack_awq(
    qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, group_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Int4 parts of an AWQ (GEMM) 4-bit linear."""
    codes = _awq_columns(_unpack_last(qweight))  # (K, N)
    zeros = _awq_columns(_unpack_last(qzeros))
    return int4_parts(codes, zeros, scales, group_size)


@dataclass(frozen=True)
class PackedInt4:
    """A GPTQ/AWQ linear weight unpacked for hearth's int4 kernels (model/ builds an
    Int4Weight from it without re-quantizing): q (N, K) codes, scales_and_zeros (G, N, 2)."""

    q: torch.Tensor
    scales_and_zeros: torch.Tensor
    group_size: int

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.q.shape)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(N, K): the checkpoint's own w = scale * (q - zero)."""
        sz = self.scales_and_zeros.float().repeat_interleave(self.group_size, 0)  # (K, N, 2)
        return ((self.q.float() - 8) * sz[..., 0].t() + sz[..., 1].t()).to(dtype)


@dataclass(frozen=True)
class Int4Format:
    method: str  # "gptq" | "awq"
    group_size: int
    zero_offset: int  # GPTQ v1 stores zero - 1


def int4_format(raw_config: dict[str, Any]) -> Int4Format | None:
    """The GPTQ/AWQ format a config.json's quantization_config names (None for float
    checkpoints); other quantization methods and bit widths are refused by name."""
    qc = raw_config.get("quantization_config")
    if not isinstance(qc, dict):
        return None
    method = str(qc.get("quant_method", "")).lower()
    if method not in ("gptq", "awq"):
        raise UnsupportedModelError(
            f"quantization_config.quant_method {method!r} is not loaded; hearth loads 4-bit "
            "GPTQ and AWQ checkpoints, and float ones"
        )
    bits = int(qc.get("bits") or qc.get("w_bit") or 4)
    if bits != 4:
        raise UnsupportedModelError(f"{method} with {bits} bits: hearth loads 4-bit only")
    if method == "awq" and str(qc.get("version", "gemm")).lower() != "gemm":
        raise UnsupportedModelError("AWQ checkpoints in the GEMM packing only (version: gemm)")
    group = int(qc.get("group_size") or qc.get("q_group_size") or 128)
    v2 = str(qc.get("checkpoint_format", "gptq")).lower() == "gptq_v2"
    return Int4Format(method, group, 0 if (method == "awq" or v2) else 1)


class Int4CheckpointTensors(Mapping[str, Any]):
    """HF-named tensors of a GPTQ/AWQ folder: `X.weight` for each packed `X.qweight`
    (PackedInt4, or dense in `dense` dtype when given), the packing tensors hidden, every
    other tensor as the folder has it."""

    _PARTS = (".qweight", ".qzeros", ".scales", ".g_idx")

    def __init__(
        self, inner: Mapping[str, torch.Tensor], fmt: Int4Format, dense: torch.dtype | None
    ) -> None:
        self.inner, self.fmt, self.dense = inner, fmt, dense
        self._packed = {n.removesuffix(".qweight") for n in inner if n.endswith(".qweight")}
        hidden = {p + s for p in self._packed for s in self._PARTS}
        self._names = [n for n in inner if n not in hidden] + [p + ".weight" for p in self._packed]
        self.release_pages = getattr(inner, "release_pages", None)

    def __getitem__(self, name: str) -> Any:
        prefix = name.removesuffix(".weight")
        if prefix not in self._packed or prefix == name:
            return self.inner[name]
        get = self.inner.__getitem__
        if self.fmt.method == "awq":
            q, sz = unpack_awq(
                get(prefix + ".qweight"),
                get(prefix + ".qzeros"),
                get(prefix + ".scales"),
                self.fmt.group_size,
            )
        else:
            g_idx = get(prefix + ".g_idx") if prefix + ".g_idx" in self.inner else None
            qweight = get(prefix + ".qweight")
            if is_act_order(g_idx, qweight.shape[0] * 8, self.fmt.group_size):
                assert g_idx is not None
                # act-order: served dense (model/ quantizes it again for an int4 mode)
                dense = dequantize_gptq_act_order(
                    qweight,
                    get(prefix + ".qzeros"),
                    get(prefix + ".scales"),
                    g_idx,
                    zero_offset=self.fmt.zero_offset,
                )
                return dense.to(self.dense or torch.float32)
            q, sz = unpack_gptq(
                qweight,
                get(prefix + ".qzeros"),
                get(prefix + ".scales"),
                self.fmt.group_size,
                g_idx,
                zero_offset=self.fmt.zero_offset,
            )
        packed = PackedInt4(q, sz, self.fmt.group_size)
        return packed if self.dense is None else packed.dequantize(self.dense)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names
