"""The C low-bit matmul kernels (lowbit_matmul.c): int4 and int8 weights multiplied
with AVX-512 VNNI (or AVX2, or portable C: the build's instruction-set level picks the
road, all bit-identical) after quantizing the activations to int8 per 32 columns, as
llama.cpp does. Measured on 2 cores (SmolLM2-135M shapes, Xeon with AVX-512 VNNI): one decode row
through the 3072 x 576 gate/up projection takes 43 us on one thread where PyTorch's
`_weight_int4pack_mm_for_cpu` takes 113 us; the 49152 x 576 int8 LM head 1.16 ms where
`_weight_int8pack_mm` takes 1.73 ms; 16 rows 3-4x faster than either. The cost is the
activations' int8 rounding (relative error of a product ~5e-3 against ~2e-3 for bf16
activations), which `hearth bench --accuracy` reports per quant mode.

Weights are re-laid out once at load (`pack_int4`, `pack_int8`) so each 64-byte load feeds
16 output rows; the layout is the only copy a layer keeps. Built at first use like the
paged-decode kernel (native_build.py); no compiler: `available()` is False, the backend
offers no low-bit kernel and layers/quant.py keeps PyTorch's kernels.
Knows nothing of layers or models."""

from __future__ import annotations

import ctypes
import logging

import torch

from hearth.model.cpu import native_build, thread_pool

log = logging.getLogger(__name__)

GROUP = 32  # activation and int4 weight group: columns per scale
ROWS = 16  # output rows per block of the layout


def _setup(lib: ctypes.CDLL) -> None:
    pointer, int32 = ctypes.c_void_p, ctypes.c_int
    for name in ("hearth_int4_matmul", "hearth_int8_matmul"):
        fn = getattr(lib, name)
        fn.restype = int32
        fn.argtypes = [pointer, int32, int32, int32, int32, pointer, pointer, pointer]
        fn.argtypes += [pointer, int32, int32, int32]
    lib.hearth_lowbit_set_pool.argtypes = [pointer]
    lib.hearth_lowbit_set_pool(thread_pool.pointer())


KERNEL = native_build.Kernel(
    "lowbit_matmul", log, "int4/int8 matmuls use PyTorch's kernels", _setup
)
ROADS = {2: "avx512-vnni", 1: "avx2", 0: "c"}  # hearth_lowbit_road's answers


def road() -> str:
    """Which of the C file's roads the loaded library took (ROADS)."""
    lib = KERNEL.lib
    assert lib is not None, "call available() first"
    lib.hearth_lowbit_road.restype = ctypes.c_int
    return ROADS[lib.hearth_lowbit_road()]


def available(level: str | None = None) -> bool:
    """Whether the kernel is built and loaded for instruction-set `level` (isa.py;
    None: the level loaded last; tries once per level)."""
    return KERNEL.load(level) is not None


def supports(out_features: int, in_features: int, group_size: int = GROUP) -> bool:
    """Whether a weight of this shape (and int4 group size) can take the kernel."""
    return out_features % ROWS == 0 and in_features % GROUP == 0 and group_size == GROUP


def pack_int4(
    q: torch.Tensor, scales_and_zeros: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codes q (N, K) in 0..15 and (K/32, N, 2) (scale, zero) with w = (q - 8) scale + zero
    -> (codes (N/16, K/32, 4, 16, 4) uint8, scales d, mins m (N/16, K/32, 16) fp16) with
    w = q d + m. Byte j of row r in chunk c of group g: column g*32 + c*8 + j in the low
    nibble, column g*32 + c*8 + 4 + j in the high one."""
    n, k = q.shape
    nb, g = n // ROWS, k // GROUP
    q6 = q.to(torch.uint8).view(nb, ROWS, g, 4, 2, 4).permute(0, 2, 3, 1, 4, 5)
    codes = (q6[..., 0, :] | (q6[..., 1, :] << 4)).contiguous()
    sz = scales_and_zeros.float()
    d, zero = sz[..., 0], sz[..., 1]  # (G, N)

    def blocked(t: torch.Tensor) -> torch.Tensor:
        return t.t().reshape(nb, ROWS, g).transpose(1, 2).to(torch.float16).contiguous()

    return codes, blocked(d), blocked(zero - 8.0 * d)


def unpack_int4(codes: torch.Tensor, scales: torch.Tensor, mins: torch.Tensor) -> torch.Tensor:
    """The (N, K) bf16 weight the int4 kernel multiplies by (q d + m, rounded to bf16)."""
    nb, g = codes.shape[:2]
    lo, hi = codes & 0x0F, codes >> 4  # (NB, G, 4, 16, 4)
    q = torch.stack([lo, hi], dim=4).permute(0, 3, 1, 2, 4, 5)  # (NB, 16, G, 4, 2, 4)
    q = q.reshape(nb * ROWS, g, GROUP).to(torch.bfloat16)

    def rows(t: torch.Tensor) -> torch.Tensor:  # (NB, G, 16) -> (N, G, 1)
        return t.transpose(1, 2).reshape(nb * ROWS, g, 1).to(torch.bfloat16)

    return torch.addcmul(rows(mins), q, rows(scales)).view(nb * ROWS, g * GROUP)


def pack_int8(
    q: torch.Tensor, scales: torch.Tensor, reuse_storage: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codes q (N, K) int8 with w = q * scale[row] -> (codes (N/16, K/32, 8, 16, 4) int8,
    corr (N/16, K/32, 16) int32 = -128 * each group's code sum, scales (N,) float32).
    Chunk c of group g holds columns g*32 + c*4 .. + 3 of each row. reuse_storage: lay the
    codes out inside q's own memory (q is then the layout's bytes; no second copy of a
    28 MB embedding at load)."""
    n, k = q.shape
    nb, g = n // ROWS, k // GROUP
    # a few blocks at a time: the sum widens its input to int32 (4x a 28 MB LM head), and
    # each block's bytes are re-ordered within the block
    step = max(1, (1 << 20) // (ROWS * k))
    blocks = q.view(nb, ROWS, g, GROUP)
    corr = torch.empty(nb, g, ROWS, dtype=torch.int32)
    for start in range(0, nb, step):
        part = blocks[start : start + step].sum(-1, dtype=torch.int32)  # (b, 16, G)
        corr[start : start + step] = part.transpose(1, 2) * -128
    rows = q.view(nb, ROWS, g, 8, 4)
    if not (reuse_storage and q.is_contiguous()):
        codes = rows.permute(0, 2, 3, 1, 4).contiguous()
        return codes, corr, scales.float().contiguous()
    for start in range(0, nb, step):
        part = rows[start : start + step]
        part.copy_(part.permute(0, 2, 3, 1, 4).contiguous().view(part.shape))
    return q.view(nb, g, 8, ROWS, 4), corr, scales.float().contiguous()


def int8_rows(codes: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Rows `ids` (T,) of the int8 weight in `pack_int8`'s layout -> (T, K) int8."""
    picked = codes[ids // ROWS, :, :, ids % ROWS, :]  # (T, G, 8, 4)
    return picked.reshape(ids.shape[0], -1)


def _matmul(
    name: str,
    x: torch.Tensor,
    codes: torch.Tensor,
    rest: tuple[torch.Tensor, ...],
    out_f32: bool,
    threads: tuple[int, bool],
) -> torch.Tensor:
    lib = KERNEL.lib
    assert lib is not None, "call available() first"
    xc = x.contiguous()
    m, k = xc.shape
    n = codes.shape[0] * ROWS
    if k != codes.shape[1] * GROUP:
        raise ValueError(f"input has {k} columns, the weight {codes.shape[1] * GROUP}")
    out = torch.empty(m, n, dtype=torch.float32 if out_f32 else torch.bfloat16)
    if m == 0:
        return out
    ptrs = [t.data_ptr() for t in rest]
    status = getattr(lib, name)(
        xc.data_ptr(),
        int(xc.dtype == torch.bfloat16),
        m,
        k,
        n,
        codes.data_ptr(),
        *ptrs,
        out.data_ptr(),
        int(not out_f32),
        *threads,
    )
    if status != 0:
        raise ValueError(f"{name}: shape ({m}, {k}) x ({n}, {k}) refused (status {status})")
    return out


def int4_matmul(
    x: torch.Tensor,
    codes: torch.Tensor,
    scales: torch.Tensor,
    mins: torch.Tensor,
    out_f32: bool,
    threads: tuple[int, bool],
) -> torch.Tensor:
    """x (M, K) bfloat16 or float32 @ the int4 weight.T -> (M, N) bfloat16 (float32 with
    out_f32: logits, which the sampler wants in float32, written once). threads: (count,
    on the pool) (cpu/backend.py)."""
    return _matmul("hearth_int4_matmul", x, codes, (scales, mins), out_f32, threads)


def int8_matmul(
    x: torch.Tensor,
    codes: torch.Tensor,
    corr: torch.Tensor,
    scales: torch.Tensor,
    out_f32: bool,
    threads: tuple[int, bool],
) -> torch.Tensor:
    """x (M, K) bfloat16 or float32 @ the int8 weight.T -> (M, N) bfloat16 (or float32)."""
    return _matmul("hearth_int8_matmul", x, codes, (corr, scales), out_f32, threads)
