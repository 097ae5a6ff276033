"""Models that are a base plus an adapter (what `hearth tune` makes). The manifest lists the
base's files (the same blobs: nothing is copied) and the adapter's under `adapter/`, and
says so in `extra`: {"adapter": "adapter/", "base": name, "base_digest": digest}. The
record keeps the base's model-card facts (architecture, license, template), with the source
"tune:<base>", so `hearth list` shows what it was made from. Knows nothing of tensors."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from hearth.errors import UserInputError
from hearth.store.location import link_folder
from hearth.store.manifests import Manifest, ManifestFile
from hearth.store.names import ModelName
from hearth.store.records import ModelRecord
from hearth.store.store import Store

__all__ = ["ADAPTER_DIR", "AdapterLocation", "add_adapter_model", "locate_adapter_model"]

ADAPTER_DIR = "adapter"


@dataclass(frozen=True)
class AdapterLocation:
    """base_path: what the weights loader opens (a .gguf blob or an HF folder);
    adapter_dir: the adapter's files; base / base_digest: the base's name and digest."""

    base_path: Path
    base_format: str
    adapter_dir: Path
    base: str
    base_digest: str
    record: ModelRecord


def is_adapter_manifest(manifest: Manifest) -> bool:
    return bool(manifest.extra.get("adapter"))


def add_adapter_model(store: Store, base: str, target: str, adapter_dir: Path) -> ModelRecord:
    """Store `target` as `base` + the adapter files in `adapter_dir` (replacing `target`)."""
    base_name, name = ModelName.parse(base), ModelName.parse(target)
    if base_name == name:
        raise UserInputError(
            f"--name {target} is the base's own name; give the tuned model a new one"
        )
    base_record = store.get(base)
    base_manifest = store._manifest(base_name, base)
    if is_adapter_manifest(base_manifest):
        raise UserInputError(
            f"{base} is itself a tuned model; run `hearth merge {base}` and tune the merged model"
        )
    files = list(base_manifest.files)
    for path in sorted(p for p in adapter_dir.rglob("*") if p.is_file()):
        digest, size = store.blobs.add_file(path)
        files.append(
            ManifestFile(f"{ADAPTER_DIR}/{path.relative_to(adapter_dir).as_posix()}", digest, size)
        )
    base_file = base_manifest.files[0].path if base_manifest.format == "gguf" else None
    manifest = Manifest(
        format=base_manifest.format,
        files=tuple(files),
        source=f"tune:{base_name}",
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        extra={
            "adapter": f"{ADAPTER_DIR}/",
            "base": str(base_name),
            "base_digest": base_record.digest,
            **({"base_file": base_file} if base_file else {}),
        },
    )
    record = replace(
        base_record,
        name=str(name),
        digest=manifest.digest,
        size=manifest.size,
        source=manifest.source,
        created=datetime.now(UTC),
    )
    return store.commit_manifest(name, manifest, record)


def locate_adapter_model(store: Store, name: str) -> AdapterLocation:
    """Where the base and the adapter of the tuned model `name` are. Raises UserInputError
    when `name` is a plain model."""
    model = ModelName.parse(name)
    record = store.get(name)
    manifest = store._manifest(model, name)
    if not is_adapter_manifest(manifest):
        raise UserInputError(f"{name} has no adapter (it is not a model `hearth tune` made)")
    folder = link_folder(store.models_dir, manifest, store.blobs)
    base_file = manifest.extra.get("base_file")
    base_path = folder / base_file if base_file else folder
    return AdapterLocation(
        base_path=base_path,
        base_format=manifest.format,
        adapter_dir=folder / ADAPTER_DIR,
        base=str(manifest.extra["base"]),
        base_digest=str(manifest.extra["base_digest"]),
        record=record,
    )
