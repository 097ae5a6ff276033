"""Which backend runs the network's fast operations, chosen once per process and setting
(the way vLLM's `get_attn_backend` is): `kernels = "auto"` takes the CPU backend (C kernels
built for the instruction-set level `cpu_isa` names, auto: the best this CPU runs; where it
runs none, ARM or an x86 without AVX2, the reference PyTorch), `"torch"` the reference
PyTorch of layers/ops.py. `disabled` switches single kernels off (a debugging aid; the names are
cpu/backend.py's KERNEL_NAMES). The choice is logged once, in one line that says what runs.

Layers never ask this module anything: the builder hands them the backend it got here.
Knows nothing of the engine or the environment (the settings arrive as values)."""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from hearth.config import CPU_ISA_MODES, KERNEL_MODES, Settings
from hearth.errors import InvalidParameterError
from hearth.model.cpu import isa, native_build
from hearth.model.cpu.backend import KERNEL_NAMES, CpuBackend
from hearth.model.layers.ops import Ops

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendConfig:
    """kernels: "auto" (the C kernels where they run) or "torch" (the reference only);
    disabled: kernels to leave off under "auto" (KERNEL_NAMES); compiler and kernel_cache:
    what builds the C kernels and where they are kept (native_build.Toolchain); cpu_isa:
    the kernels' instruction-set level (CPU_ISA_MODES; a level this CPU cannot run is
    refused when the backend is selected)."""

    kernels: str = "auto"
    disabled: tuple[str, ...] = ()
    compiler: str = "cc"
    kernel_cache: Path | None = None
    cpu_isa: str = "auto"

    @classmethod
    def of(cls, settings: Settings) -> BackendConfig:
        """The backend the settings ask for (kernels, disabled_kernels, cc, xdg_cache_home,
        cpu_isa)."""
        return cls(
            settings.kernels,
            settings.disabled_kernels,
            settings.cc,
            settings.xdg_cache_home,
            settings.cpu_isa,
        )

    def __post_init__(self) -> None:
        if self.kernels not in KERNEL_MODES:
            raise InvalidParameterError(
                "kernels",
                f"kernels must be one of {', '.join(KERNEL_MODES)} (setting kernels / "
                f"HEARTH_KERNELS), got {self.kernels!r}",
            )
        if self.cpu_isa not in CPU_ISA_MODES:
            raise InvalidParameterError(
                "cpu_isa",
                f"cpu_isa must be one of {', '.join(CPU_ISA_MODES)} (setting cpu_isa / "
                f"HEARTH_CPU_ISA), got {self.cpu_isa!r}",
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
    level = None if config.kernels == "torch" else isa.choose(config.cpu_isa)  # may raise
    backend = Ops() if level is None else CpuBackend(config.disabled, level)
    why = ""
    if level is None and config.kernels != "torch":
        why = f" (this {platform.machine()} CPU runs none of the kernels' levels)"
    log.info("%s%s", backend.describe(), why)
    return backend
