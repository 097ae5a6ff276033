"""Manifests: `$HEARTH_HOME/manifests/<name>/<tag>.json`, one per model name, listing the
model's files by relative path, blob digest and size. The model digest is the sha256 of
the manifest's canonical JSON (format and files). Written atomically (temp + fsync + rename) under a
per-manifest lock. Knows nothing of how blobs are stored or where files came from."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from filelock import FileLock

from hearth.errors import CorruptModelError
from hearth.store.blobs import pid_alive
from hearth.store.names import ModelName

FORMATS = ("gguf", "hf")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class ManifestFile:
    path: str  # relative, POSIX: "model.gguf" or "model-00001-of-00002.safetensors"
    digest: str  # "sha256:<hex>"
    size: int

    def __post_init__(self) -> None:
        if not isinstance(self.path, str):
            raise ValueError(f"path must be a string, got {self.path!r}")
        p = PurePosixPath(self.path)
        if not self.path or p.is_absolute() or ".." in p.parts or "\\" in self.path:
            raise ValueError(f"path must be relative without '..', got {self.path!r}")
        if not isinstance(self.size, int) or self.size < 0:
            raise ValueError(f"size must be an integer >= 0, got {self.size!r}")
        if not isinstance(self.digest, str) or not _DIGEST.fullmatch(self.digest):
            raise ValueError(f"digest must be 'sha256:<64 hex digits>', got {self.digest!r}")


@dataclass(frozen=True)
class Manifest:
    format: str
    files: tuple[ManifestFile, ...]
    source: str
    created: str  # ISO 8601, UTC
    schema: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        if not self.files:
            raise ValueError("files must not be empty")
        if not isinstance(self.source, str) or not isinstance(self.created, str):
            raise ValueError("source and created must be strings")
        if not isinstance(self.extra, dict):
            raise ValueError(f"extra must be an object, got {self.extra!r}")

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> str:
        data = asdict(self)
        data["files"] = [asdict(f) for f in sorted(self.files, key=lambda f: f.path)]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        """sha256 of the canonical JSON of what the model *is* (format + files); where it came
        from and when are kept in the manifest but left out, so the same bytes pulled twice
        or from two sources have one digest."""
        data: dict[str, Any] = {
            "format": self.format,
            "files": [asdict(f) for f in sorted(self.files, key=lambda f: f.path)],
        }
        # a created model's Modelfile layers (template, system, parameters...) are part of
        # what it is: the same base with another system prompt is another model
        if "modelfile" in self.extra:
            data["modelfile"] = self.extra["modelfile"]
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("files"), list):
            raise ValueError("not a manifest (a JSON object with a list of files)")
        files = tuple(ManifestFile(**f) for f in data.pop("files"))
        return cls(files=files, **data)


class ManifestStore:
    def __init__(self, root: Path, locks: Path) -> None:
        self.root = root
        self.locks = locks

    def path(self, name: ModelName) -> Path:
        return self.root / name.name / f"{name.tag}.json"

    def lock(self, name: ModelName) -> FileLock:
        self.locks.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.locks / f"manifest-{name.name}-{name.tag}.lock"))

    def read(self, name: ModelName) -> Manifest | None:
        """The manifest of `name`, None when there is none; CorruptModelError (naming the
        file) when it is damaged."""
        path = self.path(name)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CorruptModelError(f"manifest {path} cannot be read ({exc})") from exc
        try:
            return Manifest.from_json(raw.decode("utf-8"))
        except (ValueError, TypeError, KeyError) as exc:  # UnicodeDecodeError is a ValueError
            raise CorruptModelError(
                f"manifest {path} is damaged ({str(exc)[:200]}); `hearth rm {name}` removes "
                "it, then pull the model again"
            ) from exc

    def scan(self) -> tuple[list[tuple[ModelName, Manifest]], list[tuple[ModelName, str]]]:
        """Every manifest that reads, and (name, why) for each damaged one."""
        good: list[tuple[ModelName, Manifest]] = []
        damaged: list[tuple[ModelName, str]] = []
        for name in self.names():
            try:
                manifest = self.read(name)
            except CorruptModelError as exc:
                damaged.append((name, str(exc)))
                continue
            if manifest is not None:
                good.append((name, manifest))
        return good, damaged

    def write(self, name: ModelName, manifest: Manifest) -> None:
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{name.tag}.{os.getpid()}-{uuid.uuid4().hex}.tmp"
        try:
            with tmp.open("w") as f:
                f.write(manifest.to_json())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def delete(self, name: ModelName) -> None:
        path = self.path(name)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when it held the last tag

    def names(self) -> list[ModelName]:
        if not self.root.is_dir():
            return []
        found = []
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir():
                continue
            for file in sorted(folder.glob("*.json")):
                with contextlib.suppress(Exception):
                    found.append(ModelName(folder.name, file.stem))
        return found

    def clean_partials(self) -> None:
        if self.root.is_dir():
            for tmp in self.root.glob("*/.*.tmp"):
                pid = tmp.name.rsplit(".", 2)[-2].split("-", 1)[0]
                if pid.isdigit() and not pid_alive(int(pid)):
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
