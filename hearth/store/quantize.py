"""`hearth quantize SRC --type T [--name NEW]`: a stored model, a GGUF file or an HF folder
becomes a new store model holding one GGUF file at type T. The bytes are written by a
`write(source path, destination .gguf)` the caller passes in (hearth.weights.gguf_quantize,
a layer above the store); the store finds the source, stages the output, stores it and
records in the manifest what it was made from. The license travels in the file
(`general.license`). Knows nothing of tensors or HTTP."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.errors import ModelNotFoundError, UserInputError
from hearth.store.manifests import Manifest
from hearth.store.names import ModelName
from hearth.store.staging import unique_name

if TYPE_CHECKING:
    from hearth.store.store import Store

# (source file or HF folder, destination .gguf) -> None
Writer = Callable[[Path, Path], None]


def _source(store: Store, src: str) -> tuple[Path, str, str | None]:
    """(the file or folder to read, a label, the store digest when it is a stored model)."""
    path = Path(src).expanduser()
    if path.exists():
        return path.resolve(), path.name.removesuffix(".gguf"), None
    try:
        location = store.locate(src)
    except ModelNotFoundError:
        raise UserInputError(
            f"'{src}' is neither a stored model nor a path; `hearth list` shows the models"
        ) from None
    return location.path, str(ModelName.parse(src).name), location.record.digest


def quantize_model(store: Store, src: str, type_name: str, name: str | None, write: Writer) -> Any:
    """Store the quantized model `write` makes from `src`; returns its ModelRecord."""
    kind = type_name.upper()
    path, label, digest = _source(store, src)
    target = (
        ModelName.parse(name) if name else ModelName(ModelName.derive(label).name, kind.lower())
    )
    with store.staging.claim(unique_name(f"quantize-{target.name}")) as work:
        work.mkdir(parents=True, exist_ok=True)
        out = work / f"{target.name}-{kind}.gguf"
        write(path, out)
        store.import_path(out, str(target))
    manifest = store.manifest(str(target))
    extra = dict(manifest.extra) | {
        "quantized_from": {"source": src, "digest": digest, "type": kind}
    }
    return store.commit_manifest(
        target,
        Manifest(manifest.format, manifest.files, f"quantize:{src}", manifest.created, extra=extra),
    )
