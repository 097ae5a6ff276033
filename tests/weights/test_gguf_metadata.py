"""read_gguf_metadata / read_gguf_header: every value type, the real files (against
gguf.GGUFReader, the reference parser), and bad files."""

from __future__ import annotations

import time
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGUFValueType

from hearth.errors import CorruptModelError, UserInputError
from hearth.weights.gguf_metadata import read_gguf_header, read_gguf_metadata


def _write_all_types(path: Path) -> dict[str, object]:
    """A small GGUF holding one key of every value type and two tensors; returns the
    expected metadata."""
    w = gguf.GGUFWriter(str(path), arch="llama")
    expected: dict[str, object] = {"general.architecture": "llama"}
    scalars = [
        ("t.u8", 200, GGUFValueType.UINT8),
        ("t.i8", -100, GGUFValueType.INT8),
        ("t.u16", 60000, GGUFValueType.UINT16),
        ("t.i16", -30000, GGUFValueType.INT16),
        ("t.u32", 4_000_000_000, GGUFValueType.UINT32),
        ("t.i32", -2_000_000_000, GGUFValueType.INT32),
        ("t.f32", 0.5, GGUFValueType.FLOAT32),
        ("t.bool", True, GGUFValueType.BOOL),
        ("t.u64", 2**63 + 5, GGUFValueType.UINT64),
        ("t.i64", -(2**62), GGUFValueType.INT64),
        ("t.f64", 1e-300, GGUFValueType.FLOAT64),
        ("t.str", "héllo ✓ 日本", GGUFValueType.STRING),
    ]
    for key, val, vtype in scalars:
        w.add_key_value(key, val, vtype)
        expected[key] = val
    w.add_array("t.strs", ["a", "", "ü b"])
    expected["t.strs"] = ["a", "", "ü b"]
    w.add_key_value("t.ints", [1, -2, 3], GGUFValueType.ARRAY, sub_type=GGUFValueType.INT32)
    expected["t.ints"] = [1, -2, 3]
    w.add_key_value("t.floats", [0.25, -1.5], GGUFValueType.ARRAY, sub_type=GGUFValueType.FLOAT32)
    expected["t.floats"] = [0.25, -1.5]
    w.add_key_value("t.bools", [True, False], GGUFValueType.ARRAY, sub_type=GGUFValueType.BOOL)
    expected["t.bools"] = [True, False]
    w.add_tensor("a.weight", np.arange(12, dtype=np.float32).reshape(3, 4))
    w.add_tensor("b.weight", np.ones((2, 32), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return expected


def test_every_value_type_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "types.gguf"
    expected = _write_all_types(path)
    meta = read_gguf_metadata(path)
    assert meta == expected
    assert type(meta["t.bool"]) is bool and all(type(b) is bool for b in meta["t.bools"])
    assert type(meta["t.u64"]) is int and type(meta["t.f32"]) is float

    header = read_gguf_header(path)
    a, b = header.tensors
    assert (a.name, a.shape, a.ggml_type.name, a.n_bytes) == ("a.weight", (3, 4), "F32", 48)
    assert (b.name, b.shape, b.ggml_type.name, b.n_bytes) == ("b.weight", (2, 32), "F16", 128)
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    got = raw[a.offset : a.offset + a.n_bytes].view(np.float32).reshape(a.shape)
    np.testing.assert_array_equal(got, np.arange(12, dtype=np.float32).reshape(3, 4))


def test_real_file_matches_gguf_reader(smollm2_gguf: Path) -> None:
    t0 = time.perf_counter()
    header = read_gguf_header(smollm2_gguf)
    elapsed = time.perf_counter() - t0
    reader = gguf.GGUFReader(smollm2_gguf)
    ref = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert list(header.metadata) == list(ref)
    assert header.metadata == ref
    assert len(header.tensors) == len(reader.tensors) == 272
    for mine, theirs in zip(header.tensors, reader.tensors, strict=True):
        assert mine.name == theirs.name
        assert mine.ggml_type == theirs.tensor_type
        assert mine.shape == tuple(reversed(theirs.shape.tolist()))
        assert (mine.offset, mine.n_bytes) == (theirs.data_offset, theirs.n_bytes)
    assert header.metadata["general.architecture"] == "llama"
    assert len(header.metadata["tokenizer.ggml.tokens"]) == 49152
    assert elapsed < 2.0  # header only: no tensor data is touched


def test_gemma3_metadata(gemma3_gguf: Path) -> None:
    meta = read_gguf_metadata(gemma3_gguf)
    assert meta["general.architecture"] == "gemma3"
    assert meta["gemma3.attention.sliding_window"] == 512
    assert meta["gemma3.attention.key_length"] == 256
    tokens, scores = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.scores"]
    assert len(tokens) == len(scores) == len(meta["tokenizer.ggml.token_type"]) == 262144
    assert tokens[:3] == ["<pad>", "<eos>", "<bos>"]
    assert isinstance(scores[5], float)


@pytest.mark.parametrize("keep", [10, 100, 5000])
def test_truncated_header_is_corrupt(tmp_path: Path, smollm2_gguf: Path, keep: int) -> None:
    bad = tmp_path / "cut.gguf"
    with smollm2_gguf.open("rb") as f:
        bad.write_bytes(f.read(keep))
    with pytest.raises(CorruptModelError, match=r"cut\.gguf"):
        read_gguf_metadata(bad)


def test_truncated_tensor_data_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "full.gguf"
    _write_all_types(path)
    bad = tmp_path / "short.gguf"
    bad.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CorruptModelError, match=r"short\.gguf is truncated: tensor 'b\.weight'"):
        read_gguf_header(bad)


@pytest.mark.parametrize("content", [b"", b"not a gguf file at all, just text\n" * 4])
def test_not_gguf_is_corrupt(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "model.bin"
    bad.write_bytes(content)
    with pytest.raises(CorruptModelError, match=r"model\.bin"):
        read_gguf_metadata(bad)


def test_missing_file_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"nothere\.gguf"):
        read_gguf_metadata(tmp_path / "nothere.gguf")
