"""The instruction-set level hearth's C kernels are built for: what this CPU offers (its
flags in /proc/cpuinfo), which level a setting asks for, and the compiler flags of each.

Levels, best first (docs/cpu-isa.md):
  avx512   AVX-512 F/BW/VL/DQ + VNNI (Zen 4, Xeon since Cascade Lake): built -march=native,
           so whatever else the CPU has (AVX-512 BF16, ...) is used where a kernel has a road
  avx2     AVX2 + FMA + F16C (x86-64-v3: Haswell and every x86 laptop since): -march=x86-64-v3
  generic  the kernels' portable C, built for the architecture's baseline; only when asked
           for (auto never picks it: unmeasured), e.g. to try the C kernels on ARM

`auto` takes the best level this CPU runs, or None where it runs none (ARM, old x86): the
backend is then the reference PyTorch. An AVX-512 CPU runs every level, so the tests build
and check each. Knows nothing of what the kernels compute."""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

from hearth.config import CPU_ISA_MODES
from hearth.errors import InvalidParameterError

LEVELS = CPU_ISA_MODES[1:]  # best first; "auto" is the setting's, not a level
X86 = ("x86_64", "amd64", "AMD64")

# the CPU flags (as /proc/cpuinfo spells them) each level's code needs
NEEDS: dict[str, tuple[str, ...]] = {
    "avx512": ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx2", "fma", "f16c"),
    "avx2": ("avx2", "fma", "f16c"),
    "generic": (),
}
# flags worth recording beside a measurement (bench JSON): what the levels and AMX test
RELEVANT_FLAGS = tuple(
    sorted({f for need in NEEDS.values() for f in need} | {"avx512_bf16", "avx512_fp16",
                                                           "avx_vnni", "amx_tile", "amx_int8",
                                                           "amx_bf16"})
)  # fmt: skip


def cpu_flags_line() -> str:
    """The CPU's feature line from /proc/cpuinfo (platform.processor() where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):  # x86, ARM
                return line
    except OSError:
        pass
    return platform.processor()


@cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (read once per process)."""
    line = cpu_flags_line()
    return frozenset(line.split(":", 1)[1].split() if ":" in line else line.split())


def runs(level: str, flags: frozenset[str], machine: str) -> bool:
    """Whether a CPU with `flags` on `machine` (platform.machine()) runs `level`'s code."""
    if level == "generic":
        return True
    return machine in X86 and all(f in flags for f in NEEDS[level])


def levels_here(flags: frozenset[str] | None = None, machine: str | None = None) -> list[str]:
    """The levels this CPU runs, best first (the kernel tests run each)."""
    flags = cpu_flags() if flags is None else flags
    machine = platform.machine() if machine is None else machine
    return [level for level in LEVELS if runs(level, flags, machine)]


def choose(
    setting: str = "auto", flags: frozenset[str] | None = None, machine: str | None = None
) -> str | None:
    """The level to build the kernels for: `auto` the best this CPU runs other than generic
    (None: none, the reference PyTorch runs), a named one as asked. A named level this CPU
    cannot run is an InvalidParameterError (its code would die of SIGILL)."""
    here = levels_here(flags, machine)
    if setting == "auto":
        return next((level for level in here if level != "generic"), None)
    if setting not in LEVELS:
        raise InvalidParameterError(
            "cpu_isa",
            f"cpu_isa must be one of {', '.join(CPU_ISA_MODES)} (setting cpu_isa / "
            f"HEARTH_CPU_ISA), got {setting!r}",
        )
    if setting not in here:
        flags = cpu_flags() if flags is None else flags
        machine = platform.machine() if machine is None else machine
        lacking = ", ".join(f for f in NEEDS[setting] if f not in flags)
        why = f"lacks {lacking}" if machine in X86 else f"is {machine}, not x86-64"
        raise InvalidParameterError(
            "cpu_isa",
            f"cpu_isa {setting} needs a CPU this one is not (it {why}); this CPU runs "
            f"{', '.join(here)}: set HEARTH_CPU_ISA=auto or one of those",
        )
    return setting


def compile_flags(level: str, machine: str | None = None) -> list[str]:
    """The compiler's target flags for `level`."""
    machine = platform.machine() if machine is None else machine
    if level == "avx512":
        return ["-march=native"]
    if level == "avx2":
        return ["-march=x86-64-v3", "-mtune=generic"]
    # generic: the architecture's baseline (x86-64: SSE2; elsewhere the compiler's default)
    return ["-march=x86-64", "-mtune=generic"] if machine in X86 else []
