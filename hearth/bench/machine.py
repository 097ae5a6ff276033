"""What the bench ran on: CPU model, cores torch uses, memory, and a quick memory-bandwidth
probe (the physical limit of decoding: every weight is read once per step). Knows nothing
of engines or models."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from hearth.config import load_settings
from hearth.engine.threads import dedicated_cpu
from hearth.model.backend import BackendConfig, select_backend
from hearth.model.cpu import native_build


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_total_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return 0.0


def memory_bandwidth_gbps(size_mb: int = 512, repeats: int = 5) -> float:
    """Read bandwidth: best of `repeats` sums over a `size_mb` float32 buffer (bigger than
    any cache), in GB/s. A sum reads each byte once and does almost no arithmetic."""
    buf = torch.ones(size_mb * 1024**2 // 4, dtype=torch.float32)
    buf.sum()  # touch every page once before timing
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        buf.sum()
        best = min(best, time.perf_counter() - start)
    return round(buf.numel() * 4 / best / 1e9, 2)


def machine_info(threads: int, probe: bool = True, size_mb: int = 512) -> dict[str, Any]:
    """The `machine` section of the bench JSON."""
    settings = load_settings()
    backend = select_backend(BackendConfig.of(settings))
    # the C kernels hearth's runs used (the CPU backend's names; none under kernels=torch)
    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "threads": threads,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "memory_gb": memory_total_gb(),
        "torch": torch.__version__,
        "backend": backend.name,
        "kernels": backend.enabled(),
        # AMX bf16 tiles: where present, long prefill inputs take the dense bf16 GEMM
        "amx": "amx_bf16" in native_build.cpu_flags(),
        # the C kernels' threads: hearth's work-sharing pool (shared CPU) or OpenMP
        "kernel_threads": "openmp" if dedicated_cpu() else "pool",
        # how hearth's OpenMP workers waited (peers run under their own defaults)
        "omp_wait_policy": settings.omp_wait_policy or "default",
        "dedicated_cpu": dedicated_cpu(),
    }
    info["memory_bandwidth_gbps"] = memory_bandwidth_gbps(size_mb) if probe else None
    return info
