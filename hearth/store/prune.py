"""What `hearth prune` frees: blobs that no manifest names and the symlink folders of
models no manifest holds, found here; the store removes them under its commit lock.
Knows nothing of sources or the database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hearth.store.blobs import BlobStore
from hearth.store.manifests import Manifest


@dataclass(frozen=True)
class PruneReport:
    num_blobs: int  # unused blobs removed
    blob_bytes: int  # their bytes, with partial blobs left by dead pulls
    staging_bytes: int  # downloads left by pulls that died (and resumable Hub downloads)
    damaged: tuple[str, ...] = ()  # names with damaged manifests: unused blobs were kept

    @property
    def freed(self) -> int:
        return self.blob_bytes + self.staging_bytes

    def to_dict(self) -> dict[str, object]:
        return {
            "freed_bytes": self.freed,
            "blobs_removed": self.num_blobs,
            "blob_bytes": self.blob_bytes,
            "staging_bytes": self.staging_bytes,
            "damaged": list(self.damaged),
        }


def orphan_blobs(blobs: BlobStore, manifests: Iterable[Manifest]) -> list[tuple[str, int]]:
    """(digest, size) of every blob no manifest names."""
    used = {f.digest for m in manifests for f in m.files}
    orphans = []
    for digest in blobs.digests():
        if digest not in used:
            try:
                orphans.append((digest, blobs.path(digest).stat().st_size))
            except FileNotFoundError:  # removed meanwhile
                continue
    return orphans


def orphan_link_folders(models_root: Path, manifests: Iterable[Manifest]) -> list[str]:
    """Digests of the HF symlink folders under `models_root` that no manifest holds."""
    if not models_root.is_dir():
        return []
    held = {m.digest.removeprefix("sha256:") for m in manifests}
    return [
        "sha256:" + p.name
        for p in sorted(models_root.iterdir())
        if p.is_dir() and not p.name.startswith(".") and p.name not in held
    ]
