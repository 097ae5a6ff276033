"""`hearth quantize SRC --type T [--name NEW]`: a stored model, a GGUF file or an HF folder
becomes a new store model holding one GGUF file at type T (hearth.weights.gguf_quantize;
an HF folder is first converted to a float GGUF by hearth.weights.hf_to_gguf). The license
travels in the file (`general.license`, copied or taken from the card) and the manifest
records what the model was made from. Knows nothing of tensors' meaning or HTTP."""

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

Progress = Callable[[int, int], None]


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


def quantize_model(
    store: Store,
    src: str,
    type_name: str,
    name: str | None = None,
    *,
    allow_requantize: bool = False,
    progress: Progress | None = None,
) -> Any:
    """Store the quantized model; returns its ModelRecord."""
    from hearth.weights.gguf_quantize import FILE_TYPES, quantize_gguf
    from hearth.weights.hf_to_gguf import convert_hf_folder

    kind = type_name.upper()
    if kind not in FILE_TYPES:
        raise UserInputError(
            f"unknown quantization type '{type_name}'; use one of {', '.join(FILE_TYPES)}"
        )
    path, label, digest = _source(store, src)
    target = (
        ModelName.parse(name) if name else ModelName(ModelName.derive(label).name, kind.lower())
    )
    with store.staging.claim(unique_name(f"quantize-{target.name}")) as work:
        work.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            floats = work / "float.gguf"
            convert_hf_folder(path, floats)
            path = floats
        out = work / f"{target.name}-{kind}.gguf"
        quantize_gguf(path, out, kind, allow_requantize=allow_requantize, progress=progress)
        store.import_path(out, str(target))
    manifest = store.manifest(str(target))
    extra = dict(manifest.extra) | {
        "quantized_from": {"source": src, "digest": digest, "type": kind}
    }
    return store.commit_manifest(
        target,
        Manifest(manifest.format, manifest.files, f"quantize:{src}", manifest.created, extra=extra),
    )
