"""The C paged-decode kernel against the torch road it replaces (index_select gather + SDPA,
itself tested against transformers through the decoder tests): same outputs for GQA/MQA,
sliding windows, chunks, soft-capping, uneven head sizes, shuffled block tables, float32 and
bfloat16, one thread and several."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from hearth.model.batch import AttentionMetadata
from hearth.model.cpu import native_build
from hearth.model.cpu import paged_decode as paged_kernel
from hearth.model.cpu.backend import CpuBackend
from hearth.model.kv_cache import KVCache
from hearth.model.layers.attention import decode_attention, decode_inputs
from hearth.model.layers.ops import REFERENCE

pytestmark = pytest.mark.skipif(
    not paged_kernel.available(), reason="kernel unavailable (no C compiler)"
)
BACKEND = CpuBackend()


def _step(
    lens: list[int],
    heads: int,
    kv_heads: int,
    dk: int,
    dv: int,
    dtype: torch.dtype,
    block_size: int = 16,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, KVCache, AttentionMetadata, torch.Tensor]:
    """A decode step over caches filled with random K/V at shuffled blocks."""
    gen = torch.Generator().manual_seed(sum(lens) + heads + dk)
    per_seq = [-(-n // block_size) for n in lens]
    num_blocks = sum(per_seq) + 3
    order = torch.randperm(num_blocks, generator=gen)
    key = torch.randn(num_blocks, block_size, kv_heads, dk, generator=gen).to(dtype)
    value = torch.randn(num_blocks, block_size, kv_heads, dv, generator=gen).to(dtype)
    cache = KVCache(key, value)
    tables = torch.full((len(lens), max(per_seq)), -1, dtype=torch.int32)
    used = 0
    for i, n in enumerate(per_seq):
        tables[i, :n] = order[used : used + n].int()
        used += n
    positions = torch.tensor([n - 1 for n in lens])
    slots = torch.stack(
        [
            tables[i, (n - 1) // block_size].long() * block_size + (n - 1) % block_size
            for i, n in enumerate(lens)
        ]
    )
    meta = AttentionMetadata(
        query_lens=[1] * len(lens),
        context_lens=torch.tensor(lens, dtype=torch.int32),
        block_tables=tables,
        slot_mapping=slots,
        block_size=block_size,
    )
    q = torch.randn(len(lens), heads, dk, generator=gen).to(dtype)
    k = torch.randn(len(lens), kv_heads, dk, generator=gen).to(dtype)
    v = torch.randn(len(lens), kv_heads, dv, generator=gen).to(dtype)
    return q, k, v, cache, meta, positions


def _both(
    monkeypatch: pytest.MonkeyPatch,
    lens: list[int],
    heads: int,
    kv_heads: int,
    dk: int,
    dv: int,
    dtype: torch.dtype,
    window: int | None = None,
    chunk: int | None = None,
    softcap: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    q, k, v, cache, meta, positions = _step(lens, heads, kv_heads, dk, dv, dtype)
    inputs = decode_inputs(meta, positions, {(window, chunk)})
    scale = dk**-0.5
    assert paged_kernel.supports(q, cache.key, cache.value)
    fast = decode_attention(q, k, v, cache, inputs, scale, window, softcap, chunk, BACKEND)
    slow = decode_attention(q, k, v, cache, inputs, scale, window, softcap, chunk, REFERENCE)
    return fast, slow


@pytest.mark.parametrize(
    ("heads", "kv_heads", "dk", "dv"),
    [(9, 3, 64, 64), (4, 4, 32, 32), (8, 1, 64, 64), (6, 2, 96, 64), (4, 2, 64, 128)],
)
def test_kernel_matches_torch_float32(
    monkeypatch: pytest.MonkeyPatch, heads: int, kv_heads: int, dk: int, dv: int
) -> None:
    fast, slow = _both(
        monkeypatch, [1, 17, 40, 300, 16, 33], heads, kv_heads, dk, dv, torch.float32
    )
    assert fast.shape == slow.shape == (6, heads, dv)
    torch.testing.assert_close(fast, slow, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize(
    ("window", "chunk", "softcap"),
    [(8, None, None), (None, 32, None), (20, 16, None), (None, None, 5.0), (50, None, 30.0)],
)
def test_kernel_windows_chunks_softcap(
    monkeypatch: pytest.MonkeyPatch,
    window: int | None,
    chunk: int | None,
    softcap: float | None,
) -> None:
    fast, slow = _both(
        monkeypatch, [3, 31, 64, 65, 129], 8, 2, 64, 64, torch.float32, window, chunk, softcap
    )
    torch.testing.assert_close(fast, slow, atol=2e-6, rtol=1e-5)


def test_kernel_bfloat16_within_rounding(monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = _both(monkeypatch, [5, 200, 777], 9, 3, 64, 64, torch.bfloat16)
    assert fast.dtype == torch.bfloat16
    # both accumulate in float32; they differ only by bf16 rounding of the output (and of
    # the torch road's intermediate probabilities)
    torch.testing.assert_close(fast.float(), slow.float(), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize(
    ("heads", "kv_heads", "dim", "block_size", "window", "chunk", "softcap"),
    [
        (9, 3, 64, 16, None, None, None),
        (4, 4, 32, 16, 8, None, None),
        (8, 1, 64, 32, None, 32, None),  # a group of 8; two runs of 16 keys per block
        (16, 2, 128, 64, 20, 16, None),
        (6, 2, 96, 16, None, None, 5.0),
    ],
)
def test_bfloat16_road_against_float32_on_the_same_values(
    heads: int,
    kv_heads: int,
    dim: int,
    block_size: int,
    window: int | None,
    chunk: int | None,
    softcap: float | None,
) -> None:
    """bf16 queries and caches take the kernel's bf16 road (dot products of bf16 pairs,
    16 keys at a time); the same values widened to float32 take the float32 road, itself
    equal to torch's at 2e-6. They differ by the output's bf16 rounding and sum order."""
    q, k, v, cache, meta, positions = _step(
        [1, 15, 16, 17, 100, 333], heads, kv_heads, dim, dim, torch.bfloat16, block_size
    )
    inputs = decode_inputs(meta, positions, {(window, chunk)})
    cache.write(inputs.slot_mapping, k, v)
    wide = KVCache(cache.key.float(), cache.value.float())
    args = (inputs, dim**-0.5, window, softcap, chunk, BACKEND)
    got = decode_attention(q, None, None, cache, *args)
    want = decode_attention(q.float(), None, None, wide, *args)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, atol=1e-2, rtol=8e-3)


def test_kernel_same_result_on_one_and_two_threads() -> None:
    q, k, v, cache, meta, positions = _step([70, 5, 130], 9, 3, 64, 64, torch.float32)
    inputs = decode_inputs(meta, positions, {(None, None)})
    cache.write(inputs.slot_mapping, k, v)
    one = paged_kernel.paged_decode(
        q,
        cache.key,
        cache.value,
        inputs.blocks,
        inputs.starts[None, None],
        inputs.ends,
        0.125,
        0.0,
        (1, False),
    )
    two = paged_kernel.paged_decode(
        q,
        cache.key,
        cache.value,
        inputs.blocks,
        inputs.starts[None, None],
        inputs.ends,
        0.125,
        0.0,
        (2, False),
    )
    assert torch.equal(one, two)  # each (sequence, head) is summed by one thread, in order


def test_kernel_reads_the_new_token_it_wrote() -> None:
    # a sequence of one token attends only to itself: the output is its own value
    q, k, v, cache, meta, positions = _step([1], 4, 2, 32, 32, torch.float32)
    inputs = decode_inputs(meta, positions, {(None, None)})
    out = decode_attention(q, k, v, cache, inputs, 0.1, ops=BACKEND)
    torch.testing.assert_close(out, v.repeat_interleave(2, dim=1))


def test_unsupported_shapes_take_the_torch_road() -> None:
    cache = torch.zeros(2, 16, 1, 64)
    assert not paged_kernel.supports(torch.zeros(1, 40, 64), cache, cache)  # group 40 > 32
    assert not paged_kernel.supports(
        torch.zeros(1, 4, 64, dtype=torch.float16), cache.half(), cache.half()
    )
    assert not paged_kernel.supports(torch.zeros(1, 4, 64), cache.transpose(1, 2), cache)


def test_no_compiler_falls_back_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a fresh cache (nothing built) and a compiler that fails: attention still answers
    monkeypatch.setattr(native_build, "_toolchain", native_build.Toolchain("false", tmp_path))
    monkeypatch.setattr(paged_kernel.KERNEL, "lib", None)
    monkeypatch.setattr(paged_kernel.KERNEL, "tried", False)
    with caplog.at_level(logging.WARNING, logger=paged_kernel.log.name):
        backend = CpuBackend()  # one warning, naming the kernel and what runs instead
    assert not backend.paged and "paged_decode" in caplog.text and "plain torch" in caplog.text
    assert not list(tmp_path.rglob("*.so"))  # no half-built library left behind
    q, k, v, cache, meta, positions = _step([20, 3], 4, 2, 32, 32, torch.float32)
    inputs = decode_inputs(meta, positions, {(None, None)})
    assert not backend.decodes_in_place(q, cache)
    assert decode_attention(q, k, v, cache, inputs, 0.2, ops=backend).shape == (2, 4, 32)


@pytest.mark.parametrize(
    ("heads", "kv_heads", "dim", "block_size"),
    [(9, 3, 64, 16), (8, 1, 32, 32), (16, 2, 128, 64), (3, 3, 48, 16)],
)
def test_float32_vector_road_matches_torch(
    monkeypatch: pytest.MonkeyPatch, heads: int, kv_heads: int, dim: int, block_size: int
) -> None:
    """float32 q and caches with Dk = Dv a multiple of 16 take the kernel's vector road (16
    keys scored together, q.k by FMAs): torch's numbers at float32 rounding, for runs cut by
    the block's and the context's ends."""
    q, k, v, cache, meta, positions = _step(
        [1, 15, 16, 17, 100, 333], heads, kv_heads, dim, dim, torch.float32, block_size
    )
    inputs = decode_inputs(meta, positions, {(None, None)})
    fast = decode_attention(q, k, v, cache, inputs, dim**-0.5, ops=BACKEND)
    slow = decode_attention(q, None, None, cache, inputs, dim**-0.5, ops=REFERENCE)
    torch.testing.assert_close(fast, slow, atol=2e-6, rtol=1e-5)
