from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hearth.errors import CorruptModelError, UnsupportedModelError
from hearth.store.hf_folder import hf_facts, is_hf_folder, model_files


def test_tiny_folder_facts(tiny_hf: Path) -> None:
    facts = hf_facts(tiny_hf)
    assert is_hf_folder(tiny_hf)
    assert facts.architecture == "llama"
    assert facts.parameter_count == 16 * 8 + 12 * 8  # summed over both shards
    assert facts.quantization == "F16"
    assert facts.context_length == 256
    assert facts.license_raw == "mit"
    assert facts.chat_template == "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    (tiny_hf / ".cache").mkdir()
    (tiny_hf / ".cache" / "junk").write_text("x")
    names = [p.name for p in model_files(tiny_hf)]
    assert "junk" not in names and "model.safetensors.index.json" in names


def test_missing_shard_is_reported(tiny_hf: Path) -> None:
    (tiny_hf / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CorruptModelError, match="model-00002-of-00002"):
        hf_facts(tiny_hf)


def test_truncated_safetensors_is_reported(
    tmp_path: Path, tiny_hf_factory: Callable[..., Path]
) -> None:
    folder = tiny_hf_factory(tmp_path / "one", sharded=False)
    shard = folder / "model.safetensors"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(CorruptModelError, match="truncated"):
        hf_facts(folder)


def test_folder_without_weights_names_what_is_expected(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UnsupportedModelError, match=r"config\.json and model\*\.safetensors"):
        hf_facts(tmp_path)
