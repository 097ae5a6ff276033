from __future__ import annotations

from pathlib import Path

import pytest

from hearth.errors import CorruptModelError
from hearth.store.gguf_file import gguf_facts, is_gguf


def test_smollm2_facts(smollm2_gguf: Path) -> None:
    facts = gguf_facts(smollm2_gguf)
    assert facts.format == "gguf"
    assert facts.architecture == "llama"
    assert facts.context_length == 8192
    assert facts.quantization == "Q4_1"  # general.file_type 3; 210 of 272 tensors
    assert facts.parameter_count == 134_515_008
    assert facts.license_raw == "apache-2.0"
    assert facts.chat_template is not None and "<|im_start|>" in facts.chat_template
    meta = facts.license_inputs["gguf_metadata"]
    assert meta["general.license"] == "apache-2.0"
    assert "tokenizer.ggml.tokens" not in meta  # the 49k-entry vocabulary is skipped
    assert meta["tokenizer.ggml.model"] == "gpt2"


def test_truncated_gguf_is_rejected(smollm2_gguf: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with smollm2_gguf.open("rb") as src:
        cut.write_bytes(src.read(50_000_000))
    assert is_gguf(cut)
    with pytest.raises(CorruptModelError, match="truncated"):
        gguf_facts(cut)


def test_header_only_garbage_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 64)
    with pytest.raises(CorruptModelError, match="download it again"):
        gguf_facts(bad)
    assert not is_gguf(tmp_path / "missing.gguf")


def test_gemma3_facts(gemma3_gguf: Path) -> None:
    facts = gguf_facts(gemma3_gguf)
    assert (facts.architecture, facts.context_length, facts.quantization) == (
        "gemma3",
        32768,
        "Q4_K_M",
    )
    assert facts.license_raw == "gemma"
    assert facts.chat_template is None  # a base model
    assert 260e6 < facts.parameter_count < 280e6
