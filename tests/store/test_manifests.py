from __future__ import annotations

from pathlib import Path

import pytest

from hearth.errors import CorruptModelError
from hearth.store.manifests import Manifest, ManifestFile, ManifestStore
from hearth.store.names import ModelName

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def _manifest(order: int = 1) -> Manifest:
    files = [ManifestFile("b.safetensors", D2, 20), ManifestFile("config.json", D1, 10)]
    return Manifest("hf", tuple(files[::order]), "hf://org/x", "2026-01-01T00:00:00+00:00")


def test_digest_is_canonical_and_roundtrips() -> None:
    m = _manifest()
    assert m.digest == _manifest(-1).digest  # file order does not matter
    assert m.digest.startswith("sha256:") and m.size == 30
    again = Manifest.from_json(m.to_json())
    assert again.digest == m.digest
    elsewhere = Manifest("hf", m.files, "hf://org/y", "2027-01-01T00:00:00+00:00")
    assert elsewhere.digest == m.digest  # same bytes from another source, another day
    other = Manifest("hf", (ManifestFile("config.json", D2, 20),), m.source, m.created)
    assert other.digest != m.digest


def test_bad_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="path"):
        ManifestFile("../x", D1, 1)
    with pytest.raises(ValueError, match="format"):
        Manifest("onnx", (ManifestFile("x", D1, 1),), "s", "c")
    with pytest.raises(ValueError, match="files"):
        Manifest("gguf", (), "s", "c")


def test_store_writes_lists_and_deletes(tmp_path: Path) -> None:
    ms = ManifestStore(tmp_path / "manifests", tmp_path / "locks")
    a, b = ModelName.parse("tiny"), ModelName.parse("tiny:v2")
    assert ms.read(a) is None and ms.names() == []
    ms.write(a, _manifest())
    ms.write(b, _manifest())
    assert ms.path(a) == tmp_path / "manifests" / "tiny" / "latest.json"
    assert ms.names() == [a, b]
    assert ms.read(a) == _manifest()
    assert sorted(p.name for p in ms.path(a).parent.iterdir()) == ["latest.json", "v2.json"]
    ms.delete(a)
    ms.delete(b)
    assert ms.names() == [] and not (tmp_path / "manifests" / "tiny").exists()


def test_unreadable_manifest_says_what_to_do(tmp_path: Path) -> None:
    ms = ManifestStore(tmp_path / "manifests", tmp_path / "locks")
    name = ModelName.parse("broken")
    ms.path(name).parent.mkdir(parents=True)
    ms.path(name).write_text("{not json")
    with pytest.raises(CorruptModelError, match="hearth rm broken:latest"):
        ms.read(name)
