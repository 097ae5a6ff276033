"""Which backend runs the network's fast operations, chosen once per process and setting
(the way vLLM's `get_attn_backend` is): `kernels = "auto"` takes the CPU backend (C kernels
where they build and the CPU has what they need), `"torch"` the reference PyTorch of
layers/ops.py. `disabled` switches single kernels off (a debugging aid; the names are
cpu/backend.py's KERNEL_NAMES). The choice is logged once, in one line that says what runs.

Layers never ask this module anything: the builder hands them the backend it got here.
Knows nothing of the engine or the environment (the settings arrive as values)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from hearth.config import KERNEL_MODES, Settings
from hearth.errors import InvalidParameterError
from hearth.model.cpu import native_build
from hearth.model.cpu.backend import KERNEL_NAMES, CpuBackend
from hearth.model.layers.ops import Ops

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendConfig:
    """kernels: "auto" (the C kernels where they run) or "torch" (the reference only);
    disabled: kernels to leave off under "auto" (KERNEL_NAMES); compiler and kernel_cache:
    what builds the C kernels and where they are kept (native_build.Toolchain)."""

    kernels: str = "auto"
    disabled: tuple[str, ...] = ()
    compiler: str = "cc"
    kernel_cache: Path | None = None

    @classmethod
    def of(cls, settings: Settings) -> BackendConfig:
        """The backend the settings ask for (kernels, disabled_kernels, cc, xdg_cache_home)."""
        return cls(
            settings.kernels, settings.disabled_kernels, settings.cc, settings.xdg_cache_home
        )

    def __post_init__(self) -> None:
        if self.kernels not in KERNEL_MODES:
            raise InvalidParameterError(
                "kernels",
                f"kernels must be one of {', '.join(KERNEL_MODES)} (setting kernels / "
                f"HEARTH_KERNELS), got {self.kernels!r}",
            )
        unknown = [name for name in self.disabled if name not in KERNEL_NAMES]
        if unknown:
            raise InvalidParameterError(
                "disabled_kernels",
                f"disabled_kernels names unknown kernels {', '.join(map(repr, unknown))} "
                f"(setting disabled_kernels / HEARTH_DISABLED_KERNELS); known: "
                f"{', '.join(KERNEL_NAMES)}",
            )
        # one cache entry per distinct set, whatever the order it was given in
        object.__setattr__(self, "disabled", tuple(sorted(set(self.disabled))))


@cache  # one backend per setting and process: kernels are built and the choice logged once
def select_backend(config: BackendConfig = BackendConfig()) -> Ops:
    """The backend for `config` (made, and logged, at the first call)."""
    native_build.set_toolchain(native_build.Toolchain(config.compiler, config.kernel_cache))
    backend = Ops() if config.kernels == "torch" else CpuBackend(config.disabled)
    log.info("%s", backend.describe())
    return backend
