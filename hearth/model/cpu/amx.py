"""Whether this process may use AMX (Intel's tile units, Sapphire Rapids on): the CPU must
say amx_tile + amx_bf16 in its flags AND Linux must grant the process the tile data state
(arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), Linux 5.16 on). Without the grant,
the first tile instruction kills the process with SIGILL; a kernel too old, a seccomp
filter or a hypervisor that hides XTILEDATA all refuse it. llama.cpp's AMX build crashed on
such a Xeon (issue 32), so hearth asks first, and where it is refused does not route work
to AMX (cpu/backend.py: the dense bf16 road of long low-bit prefills, which oneDNN runs on
AMX tiles; oneDNN asks the kernel itself and falls back to AVX-512 when refused).

The decision is made once per process and logged once. Knows nothing of the kernels."""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from dataclasses import dataclass
from functools import cache

from hearth.model.cpu import isa

log = logging.getLogger(__name__)

SYS_ARCH_PRCTL = 158  # x86-64 syscall number of arch_prctl
ARCH_GET_XCOMP_PERM = 0x1022
ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18
AMX_FLAGS = ("amx_tile", "amx_bf16")


@dataclass(frozen=True)
class AmxDecision:
    """usable: AMX may run here; why: one line for the log and the bench JSON."""

    usable: bool
    why: str


def request_permission() -> tuple[bool, str]:
    """Ask Linux for the AMX tile data state for this process: (granted, why). Never
    raises: off x86-64 Linux, or where the syscall is refused, it says so. Asking again once
    granted is harmless (the permission is per process and stays)."""
    if platform.system() != "Linux" or platform.machine() not in isa.X86:
        return False, f"not x86-64 Linux ({platform.system()} {platform.machine()})"
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    if libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0:
        errno = ctypes.get_errno()
        return False, f"Linux refused ARCH_REQ_XCOMP_PERM ({os.strerror(errno)})"
    mask = ctypes.c_uint64(0)
    if libc.syscall(SYS_ARCH_PRCTL, ARCH_GET_XCOMP_PERM, ctypes.byref(mask)) != 0:
        return False, f"ARCH_GET_XCOMP_PERM failed ({os.strerror(ctypes.get_errno())})"
    if not mask.value & (1 << XFEATURE_XTILEDATA):
        return False, f"Linux granted the request but not XTILEDATA (mask {mask.value:#x})"
    return True, "granted"


def decide(flags: frozenset[str]) -> AmxDecision:
    """Whether a CPU with `flags` may use AMX in this process (asks Linux where it has it)."""
    missing = [f for f in AMX_FLAGS if f not in flags]
    if missing:
        return AmxDecision(False, f"absent (no {', '.join(missing)} in the CPU flags)")
    granted, why = request_permission()
    if not granted:
        return AmxDecision(False, f"present but not used: {why}")
    return AmxDecision(True, "in use (the OS granted the tile data state)")


@cache  # once per process: the permission is per process, and the log line is said once
def usable() -> AmxDecision:
    """This process's AMX decision (logged once)."""
    decision = decide(isa.cpu_flags())
    log.info("AMX: %s", decision.why)
    return decision
