"""Base + adapter models: the base's blobs are shared (not copied), the record keeps the
base's facts with source tune:<base>, `locate` opens it as its base with its adapter, removing
the base keeps the tuned model whole, and names are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.errors import UserInputError
from hearth.store import Store
from hearth.store.adapters import add_adapter_model, locate_adapter_model


def _adapter(tmp_path: Path) -> Path:
    folder = tmp_path / "adapter"
    folder.mkdir(exist_ok=True)
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    return folder


def test_adapter_model_shares_the_base(store: Store, tiny_hf: Path, tmp_path: Path) -> None:
    base = store.import_path(tiny_hf, "tiny")
    record = add_adapter_model(store, "tiny", "tiny-tuned", _adapter(tmp_path))
    assert record.source == "tune:tiny:latest" and record.architecture == base.architecture
    assert record.size > base.size
    where = locate_adapter_model(store, "tiny-tuned")
    assert where.base == "tiny:latest" and where.base_digest == base.digest
    assert (where.adapter_dir / "adapter_model.safetensors").read_bytes() == b"weights"
    assert (where.base_path / "config.json").is_file()
    location = store.locate("tiny-tuned")  # the engine runs the base with the adapter
    assert (location.path / "config.json").is_file() and location.format == "hf"
    assert location.adapter is not None
    assert (location.adapter / "adapter_model.safetensors").read_bytes() == b"weights"
    assert store.locate("tiny").adapter is None
    store.remove(["tiny"])  # the tuned model keeps the base's blobs alive
    assert (locate_adapter_model(store, "tiny-tuned").base_path / "config.json").is_file()


def test_adapter_names_are_checked(store: Store, tiny_hf: Path, tmp_path: Path) -> None:
    store.import_path(tiny_hf, "tiny")
    with pytest.raises(UserInputError, match="the base's own name"):
        add_adapter_model(store, "tiny", "tiny:latest", _adapter(tmp_path))
    add_adapter_model(store, "tiny", "tuned", _adapter(tmp_path))
    with pytest.raises(UserInputError, match="itself a tuned model"):
        add_adapter_model(store, "tuned", "tuned2", tmp_path / "adapter")
    with pytest.raises(UserInputError, match="has no adapter"):
        locate_adapter_model(store, "tiny")
