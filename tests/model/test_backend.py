"""select_backend: one backend per setting, made and logged once in one line that says what
runs; "torch" is the reference PyTorch (no kernels); unknown values of `kernels` or
`disabled_kernels` are errors that name the setting, the value and the allowed values (the
CLI maps them to exit code 2)."""

from __future__ import annotations

import logging

import pytest

from hearth.config import load_settings
from hearth.errors import InvalidParameterError, UserInputError
from hearth.model.backend import BackendConfig, select_backend
from hearth.model.cpu.backend import KERNEL_NAMES, CpuBackend
from hearth.model.layers.ops import Ops


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
