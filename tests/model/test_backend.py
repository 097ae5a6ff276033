"""select_backend: one backend per setting, made and logged once in one line that says what
runs; "torch" is the reference PyTorch (no kernels); unknown values of `kernels` or
`disabled_kernels` are errors that name the setting, the value and the allowed values (the
CLI maps them to exit code 2)."""

from __future__ import annotations

import logging
import platform
from collections.abc import Iterator

import pytest

from hearth.config import load_settings
from hearth.errors import InvalidParameterError, UserInputError
from hearth.model.backend import BackendConfig, select_backend
from hearth.model.cpu import isa
from hearth.model.cpu.backend import KERNEL_NAMES, CpuBackend
from hearth.model.layers.ops import Ops


@pytest.fixture(autouse=True)
def _kernels_back_on_the_best_build() -> Iterator[None]:
    """Selecting a backend for another level switches every kernel library to that level's
    build (one level per process); a backend for the CPU's best level switches them back, so
    later tests' cached backends call the builds they were chosen with."""
    yield
    if isa.choose("auto") is not None:
        CpuBackend()


def test_torch_is_the_reference() -> None:
    backend = select_backend(BackendConfig("torch"))
    assert type(backend) is Ops and backend.enabled() == [] and backend.lowbit is None
    assert backend.describe() == "kernels: torch (reference PyTorch)"


def test_auto_is_the_cpu_backend_chosen_once(caplog: pytest.LogCaptureFixture) -> None:
    config = BackendConfig(disabled=("dense", "prefill"))  # a setting no other test uses
    with caplog.at_level(logging.INFO, logger="hearth.model.backend"):
        first = select_backend(config)
        again = select_backend(BackendConfig(disabled=("prefill", "dense", "dense")))
    assert isinstance(first, CpuBackend) and again is first  # cached, whatever the order
    lines = [r.getMessage() for r in caplog.records if r.name == "hearth.model.backend"]
    assert lines == [first.describe()]  # logged once, one line
    assert lines[0].startswith(f"kernels: {first.name} (") and "threads" in lines[0]
    assert "dense" not in first.enabled() and "prefill" not in first.enabled()


def test_unknown_kernels_value_names_setting_and_choices() -> None:
    with pytest.raises(InvalidParameterError, match=r"kernels must be one of auto, torch.*'fast'"):
        BackendConfig("fast")
    with pytest.raises(InvalidParameterError, match=r"disabled_kernels.*'warp'.*lowbit"):
        BackendConfig(disabled=("warp",))
    assert all(BackendConfig(disabled=(name,)).disabled == (name,) for name in KERNEL_NAMES)


def test_settings_carry_the_choice() -> None:
    settings = load_settings(
        {"HEARTH_KERNELS": "torch", "HEARTH_DISABLED_KERNELS": "paged, lowbit"}
    )
    assert settings.kernels == "torch" and settings.disabled_kernels == ("paged", "lowbit")
    assert load_settings({}).kernels == "auto"
    with pytest.raises(UserInputError, match=r"HEARTH_KERNELS.*auto, torch.*'gpu'") as err:
        load_settings({"HEARTH_KERNELS": "gpu"})
    assert err.value.exit_code == 2


def test_a_cpu_without_a_kernel_level_gets_the_reference(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # an ARM server (no level hearth has kernels for): auto is the plain PyTorch road. The
    # CPU is stood in for (this machine is x86); select_backend uncached, as a fresh process
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(isa, "cpu_flags", lambda: frozenset({"fp", "asimd", "sve"}))
    with caplog.at_level(logging.INFO, logger="hearth.model.backend"):
        backend = select_backend.__wrapped__(BackendConfig())
    assert type(backend) is Ops and backend.enabled() == []
    assert caplog.records[-1].getMessage() == (
        "kernels: torch (reference PyTorch) (this aarch64 CPU runs none of the kernels' levels)"
    )
    generic = select_backend.__wrapped__(BackendConfig(cpu_isa="generic"))  # opted in
    assert isinstance(generic, CpuBackend) and generic.name == "cpu-generic"
    with pytest.raises(InvalidParameterError, match=r"cpu_isa avx2.*aarch64"):
        select_backend.__wrapped__(BackendConfig(cpu_isa="avx2"))


def test_cpu_isa_picks_the_kernels_build() -> None:
    with pytest.raises(InvalidParameterError, match=r"cpu_isa must be one of auto, avx512"):
        BackendConfig(cpu_isa="avx1024")
    for level in isa.levels_here():
        backend = select_backend(BackendConfig(cpu_isa=level))
        assert isinstance(backend, CpuBackend) and backend.level == level
        assert backend.describe().startswith(f"kernels: cpu-{level} (")
        assert backend.lowbit is not None  # every level has a low-bit road
    select_backend(BackendConfig())  # the kernels back on the CPU's best build
