"""native_build: a kernel built from source with the system compiler, loaded once, and
refused (with a log line naming what runs instead) when unbuildable or when its probe
says the CPU lacks what it needs. Real builds, in a temporary kernel
folder and cache."""

from __future__ import annotations

import ctypes
import logging
import shutil
from pathlib import Path

import pytest

from hearth.model.cpu import native_build

SOURCE = """
int toy_probe_yes(void) { return 1; }
int toy_probe_no(void) { return 0; }
int toy_add(int a, int b) { return a + b; }
"""

log = logging.getLogger("hearth.test.native_build")
needs_compiler = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")


@pytest.fixture
def kernels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    folder = tmp_path / "kernels"
    folder.mkdir()
    (folder / "toy.c").write_text(SOURCE)
    monkeypatch.setattr(native_build, "KERNELS", folder)
    monkeypatch.setattr(
        native_build, "_toolchain", native_build.Toolchain("cc", tmp_path / "cache")
    )
    return folder


def _typed(calls: list[ctypes.CDLL]) -> native_build.Kernel:
    def setup(lib: ctypes.CDLL) -> None:
        lib.toy_add.restype = ctypes.c_int
        lib.toy_add.argtypes = [ctypes.c_int, ctypes.c_int]
        calls.append(lib)

    return native_build.Kernel("toy", log, "toy runs in Python", setup)


@needs_compiler
def test_builds_once_sets_up_and_loads(kernels: Path, tmp_path: Path) -> None:
    calls: list[ctypes.CDLL] = []
    kernel = _typed(calls)
    lib = kernel.load()
    assert lib is not None and lib.toy_add(2, 3) == 5
    assert kernel.load() is lib and len(calls) == 1  # tried once, set up once
    assert len(list((tmp_path / "cache").rglob("toy-*.so"))) == 1


@needs_compiler
@pytest.mark.parametrize(("probe", "loads"), [("toy_probe_yes", True), ("toy_probe_no", False)])
def test_probe_decides(
    kernels: Path, caplog: pytest.LogCaptureFixture, probe: str, loads: bool
) -> None:
    kernel = native_build.Kernel(
        "toy", log, "toy runs in Python", lambda lib: None, probe, "a toy unit"
    )
    with caplog.at_level(logging.INFO, logger=log.name):
        assert (kernel.load() is not None) is loads
    assert ("no a toy unit on this CPU: toy runs in Python" in caplog.text) is not loads


def test_failed_build_warns_and_leaves_nothing(
    kernels: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (kernels / "toy.c").write_text("this is not C\n")
    with caplog.at_level(logging.WARNING, logger=log.name):
        assert _typed([]).load() is None
    assert "C kernel unavailable" in caplog.text and "toy runs in Python" in caplog.text
    assert not list((tmp_path / "cache").rglob("*.so"))


def test_backend_config_hands_the_settings_toolchain_to_the_build(tmp_path: Path) -> None:
    from hearth.config import load_settings
    from hearth.model.backend import BackendConfig

    env = {"HEARTH_HOME": str(tmp_path), "CC": "clang-99", "XDG_CACHE_HOME": str(tmp_path / "c")}
    config = BackendConfig.of(load_settings(env))
    assert (config.compiler, config.kernel_cache) == ("clang-99", tmp_path / "c")
    default = BackendConfig.of(load_settings({"HEARTH_HOME": str(tmp_path)}))
    assert (default.compiler, default.kernel_cache) == ("cc", Path.home() / ".cache")
    assert native_build.Toolchain("cc", tmp_path).cache_dir == tmp_path / "hearth" / "kernels"
