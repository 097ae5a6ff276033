"""Where a stored model's files can be opened: the GGUF blob itself, or for an HF model a
folder `$HEARTH_HOME/models/<digest hex>/` of symlinks named by the files' relative paths
and pointing at the blobs (made on demand, atomically). Knows nothing of sources."""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from hearth.store.blobs import BlobStore
from hearth.store.manifests import Manifest
from hearth.store.records import ModelRecord


@dataclass(frozen=True)
class ModelLocation:
    """`path` is what the weights loader opens: a .gguf file or an HF snapshot folder.
    `adapter`: the folder of the LoRA adapter a base + adapter model runs with."""

    path: Path
    format: str  # "gguf" | "hf"
    record: ModelRecord
    adapter: Path | None = None


def link_folder(models_root: Path, manifest: Manifest, blobs: BlobStore) -> Path:
    """The symlink folder of an HF-format manifest, made if missing."""
    target = models_root / manifest.digest.removeprefix("sha256:")
    if target.is_dir():
        return target
    models_root.mkdir(parents=True, exist_ok=True)
    tmp = models_root / f".{target.name}.{os.getpid()}-{uuid.uuid4().hex}"
    try:
        for f in manifest.files:
            link = tmp / f.path
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(blobs.path(f.digest).resolve())
        try:
            os.replace(tmp, target)
        except OSError:
            if not target.is_dir():  # another process made it first: theirs is as good
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def remove_link_folder(models_root: Path, digest: str) -> None:
    shutil.rmtree(models_root / digest.removeprefix("sha256:"), ignore_errors=True)
