"""Build one of hearth's C kernels (hearth/model/cpu/*.c) with the system C compiler at
first use and load it: `-march=native`, so the .so is cached per source, flags and CPU under
hearth/kernels of the toolchain's cache root, built beside its final name and renamed in
place so processes building at once never load half a file. `-fopenmp`: the kernels'
parallel loops run on the libgomp torch already loaded (one thread pool, not two fighting
for the cores). The compiler and cache root arrive as values (`set_toolchain`, from the
settings CC and XDG_CACHE_HOME). Knows nothing of what the kernels compute."""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

KERNELS = Path(__file__).parent  # the C sources sit beside their Python wrappers
FLAGS = [
    "-O3",
    "-march=native",
    "-fopenmp",
    "-ffp-contract=fast",
    "-fno-math-errno",
    "-shared",
    "-fPIC",
]


def cpu_flags() -> str:
    """The CPU's feature line (the .so is built for this CPU with -march=native)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


@dataclass(frozen=True)
class Toolchain:
    """What builds the kernels: `compiler` (settings.cc) and `cache_root`
    (settings.xdg_cache_home; None: ~/.cache)."""

    compiler: str = "cc"
    cache_root: Path | None = None

    @property
    def cache_dir(self) -> Path:
        root = self.cache_root if self.cache_root is not None else Path.home() / ".cache"
        return root / "hearth" / "kernels"


# process-wide, like the kernels it builds: each kernel library is built at most once per
# process, at its first use, so the toolchain is set once before that (model/backend.py)
_toolchain = Toolchain()


def set_toolchain(toolchain: Toolchain) -> None:
    """Build the kernels not built yet with `toolchain` (model/backend.py, from the settings)."""
    global _toolchain
    _toolchain = toolchain


def build(name: str) -> ctypes.CDLL:
    """NAME.c (beside this file) built (or found built) and loaded. Raises OSError or
    subprocess.SubprocessError when it cannot be (no compiler, a failed build)."""
    source_path = KERNELS / f"{name}.c"
    # a kernel may include the shared header and the other kernels (decode_step.c is
    # built from them), so every kernel source is part of each cache key
    source = source_path.read_bytes() + b"".join(
        p.read_bytes() for p in sorted(KERNELS.iterdir()) if p.suffix in (".c", ".h")
    )
    key = hashlib.sha256(
        source + " ".join(FLAGS).encode() + cpu_flags().encode() + platform.machine().encode()
    ).hexdigest()[:16]
    tools = _toolchain
    target = tools.cache_dir / f"{name}-{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            subprocess.run(
                [tools.compiler, *FLAGS, str(source_path), "-o", tmp, "-lm"],
                check=True,
                capture_output=True,
                timeout=120,
            )
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return ctypes.CDLL(str(target))


def _failure_detail(exc: BaseException) -> str:
    """The compiler's last words, for the warning that says the kernel is off."""
    detail = getattr(exc, "stderr", b"") or b""
    return ": " + detail.decode(errors="replace")[-500:] if detail else ""


def try_load(
    setup: Callable[[], ctypes.CDLL], log: logging.Logger, fallback: str
) -> ctypes.CDLL | None:
    """setup() (a kernel built, loaded and its functions typed), or None when the build
    fails; a failure is logged as one warning that says what runs instead (`fallback`)."""
    try:
        return setup()
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("C kernel unavailable (%s%s); %s", exc, _failure_detail(exc), fallback)
        return None


@dataclass
class Kernel:
    """One kernel library of this process: SOURCE.c built and loaded at the first
    `load()`, then handed to `setup` (which types its functions and gives it the thread
    pool). `load()` gives None, with a log line saying what runs instead (`fallback`), when
    the build fails or the library's `probe` function (if any) returns 0: this CPU lacks
    `needs`. It tries once per process (tests set `tried` back to False to try again).
    Whether a kernel is wanted at all is the backend's choice (cpu/backend.py)."""

    source: str
    log: logging.Logger
    fallback: str
    setup: Callable[[ctypes.CDLL], None]
    probe: str | None = None
    needs: str = ""
    lib: ctypes.CDLL | None = field(default=None, init=False)
    tried: bool = field(default=False, init=False)

    def _open(self) -> ctypes.CDLL:
        lib = build(self.source)
        self.setup(lib)
        return lib

    def load(self) -> ctypes.CDLL | None:
        if not self.tried:
            self.tried = True
            lib = try_load(self._open, self.log, self.fallback)
            if lib is not None and self.probe is not None:
                probe = getattr(lib, self.probe)
                probe.restype = ctypes.c_int
                if not probe():
                    self.log.info("no %s on this CPU: %s", self.needs, self.fallback)
                    lib = None
            self.lib = lib
        return self.lib
