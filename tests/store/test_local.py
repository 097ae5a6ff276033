from __future__ import annotations

from pathlib import Path

import pytest

from hearth.errors import UnsupportedModelError
from hearth.store.local import inspect_local


def test_gguf_and_hf_folder(smollm2_gguf: Path, tiny_hf: Path) -> None:
    fmt, facts, files = inspect_local(smollm2_gguf)
    assert (fmt, facts.architecture, files) == ("gguf", "llama", [("model.gguf", smollm2_gguf)])
    (tiny_hf / "sub").mkdir()
    (tiny_hf / "sub" / "extra.txt").write_text("x")
    fmt, facts, files = inspect_local(tiny_hf)
    assert fmt == "hf" and facts.parameter_count == 224
    assert ("sub/extra.txt", tiny_hf / "sub" / "extra.txt") in files
    assert ("config.json", tiny_hf / "config.json") in files


def test_anything_else_names_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"PK\x03\x04")
    for path in (tmp_path / "weights.bin", tmp_path):
        with pytest.raises(
            UnsupportedModelError, match=r"expected a GGUF file .* or a Hugging Face"
        ):
            inspect_local(path)


def test_a_gguf_lora_is_not_a_model_and_says_how_to_run_it(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "lora.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_tensor("blk.0.attn_v.weight.lora_a", np.ones((4, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UnsupportedModelError, match=r"is a LoRA adapter, not a model.*--lora"):
        inspect_local(path)
