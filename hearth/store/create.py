"""`hearth create NAME -f Modelfile`: a new store model made of a base's blobs (never copied:
the new manifest names the same blobs, as `cp` does) plus Ollama's other layers: adapter
files (stored as blobs under `adapter/`), the draft model (DRAFT: a name, or a path made
absolute; the engine loads it when the model runs), and the template, system prompt, parameters,
few-shot messages and licenses, kept in the manifest's `extra["modelfile"]` (part of the
model digest). Also the reverse: the Modelfile that recreates a stored model. Knows nothing of
tensors, the engine or HTTP."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.errors import StoreError, UserInputError
from hearth.store.gguf_file import read_header
from hearth.store.go_template import to_jinja
from hearth.store.manifests import Manifest, ManifestFile
from hearth.store.modelfile import Modelfile

if TYPE_CHECKING:
    from hearth.store.store import Store

ADAPTER_DIR = "adapter/"
# the PEFT files an adapter folder must hold (a GGUF LoRA is one .gguf file)
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")
LAYERS_KEY = "modelfile"


def model_files(manifest: Manifest) -> list[ManifestFile]:
    """The base model's own files (not the adapter's)."""
    return [f for f in manifest.files if not f.path.startswith(ADAPTER_DIR)]


def layers_of(manifest: Manifest) -> dict[str, Any]:
    """The Modelfile layers of a manifest ({} for a plain pulled model)."""
    layers = manifest.extra.get(LAYERS_KEY)
    return dict(layers) if isinstance(layers, dict) else {}


def merge_layers(base: dict[str, Any], mf: Modelfile) -> dict[str, Any]:
    """The base's layers with the Modelfile's on top (Ollama: a new TEMPLATE/SYSTEM replaces
    the base's; PARAMETERs replace name by name; MESSAGEs and LICENSEs replace the lists)."""
    layers = dict(base)
    if mf.template is not None:
        layers["template"] = mf.template
        layers["chat_template"] = to_jinja(mf.template)
    if mf.system is not None:
        layers["system"] = mf.system
    if mf.parameters:
        layers["parameters"] = dict(layers.get("parameters", {})) | mf.parameters
    if mf.messages:
        layers["messages"] = list(mf.messages)
    if mf.licenses:
        layers["licenses"] = list(mf.licenses)
    return {k: v for k, v in layers.items() if v not in (None, [], {})}


def chat_template_with(base_template: str | None, layers: dict[str, Any]) -> str | None:
    """The chat template a created model renders: its TEMPLATE (translated) or the base's,
    with the SYSTEM prompt put first when a conversation has none, and the MESSAGE few-shot
    history after the system message. None when there is no template at all."""
    template = layers.get("chat_template") or base_template
    if template is None:
        return None
    system, few_shot = layers.get("system"), layers.get("messages") or []
    if system is None and not few_shot:
        return template
    default = [{"role": "system", "content": system}] if system is not None else []
    prefix = (
        f"{{%- set _hearth_shots = {few_shot!r} -%}}"
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{%- set messages = [messages[0]] + _hearth_shots + messages[1:] -%}"
        "{%- else -%}"
        f"{{%- set messages = {default!r} + _hearth_shots + messages -%}}"
        "{%- endif -%}"
    )
    return prefix + template


def create_model(
    store: Store,
    name: str,
    mf: Modelfile,
    base_dir: Path,
    from_label: str | None = None,
    adapter_label: str | None = None,
) -> Any:
    """Store `name` from the Modelfile; relative paths are read from `base_dir`.
    `from_label` / `adapter_label`: what `show --modelfile` says the model and its adapter
    came from, when not their paths (uploaded blobs)."""
    # imported here: the store module imports this one
    from datetime import UTC, datetime

    from hearth.store.names import ModelName

    target = ModelName.parse(name)
    source_path = (base_dir / mf.from_).expanduser()
    if _looks_local(mf.from_) and source_path.exists():
        store.import_path(source_path, str(target))
        base_name, base_label = str(target), from_label or str(source_path.resolve())
    elif _looks_local(mf.from_):
        raise UserInputError(f"FROM {mf.from_}: {source_path} does not exist")
    else:
        base_name, base_label = mf.from_, mf.from_
    base = store._manifest(ModelName.parse(base_name), base_name)
    layers = merge_layers(layers_of(base), mf)
    layers["from"] = base_label
    files = model_files(base)
    if mf.adapters:
        files += _adapter_files(store, mf.adapters, base_dir)
        layers["adapters"] = [adapter_label] if adapter_label else list(mf.adapters)
    if mf.draft is not None:
        layers["draft"] = _draft_source(mf.draft, base_dir)
    manifest = Manifest(
        format=base.format,
        files=tuple(files),
        source=f"modelfile:{base_label}",
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        extra={k: v for k, v in base.extra.items() if k != LAYERS_KEY} | {LAYERS_KEY: layers},
    )
    return store.commit_manifest(target, manifest)


def create_from_blobs(
    store: Store,
    name: str,
    mf: Modelfile,
    files: Mapping[str, str] | None = None,
    adapters: Mapping[str, str] | None = None,
) -> Any:
    """Ollama's /api/create with `files` / `adapters` ({file name: blob digest}, blobs sent
    before with POST /api/blobs): the model's files (one GGUF, or an HF folder's files) and
    the adapter's are the store's blobs, laid out under their names in a staging folder and
    created from there as `hearth create` does from a path (content already stored is not
    stored twice)."""
    from hearth.store.staging import unique_name

    with store.staging.claim(unique_name("create-blobs")) as work:
        from_label = adapter_label = None
        if files:
            mf.from_ = str(_lay_out(store, files, work / "model", "files"))
            from_label = _blobs_label(files)
        if adapters:
            mf.adapters = [str(_lay_out(store, adapters, work / "adapter", "adapters"))]
            adapter_label = _blobs_label(adapters)
        return create_model(store, name, mf, work, from_label, adapter_label)


def _blobs_label(files: Mapping[str, str]) -> str:
    return ", ".join(f"{name}@{digest}" for name, digest in sorted(files.items()))


def _lay_out(store: Store, files: Mapping[str, str], folder: Path, field: str) -> Path:
    """Each blob linked into `folder` under its file name; the path to create from (the
    file when it is one .gguf, else the folder)."""
    folder.mkdir(parents=True)
    for file_name, digest in files.items():
        parts = Path(file_name).parts
        if not parts or Path(file_name).is_absolute() or ".." in parts:
            raise UserInputError(
                f"{field}: {file_name!r} is not a file name; give names like model.gguf or "
                "config.json"
            )
        try:
            blob = store.blobs.path(digest)
        except StoreError:
            raise UserInputError(
                f"{field}.{file_name}: {digest!r} is not a blob digest ('sha256:<64 hex>')"
            ) from None
        if not blob.is_file():
            raise UserInputError(
                f"{field}.{file_name}: no blob {digest}; send the file first with "
                f"POST /api/blobs/{digest}"
            )
        (folder / file_name).parent.mkdir(parents=True, exist_ok=True)
        (folder / file_name).symlink_to(blob)
    only = next(iter(files)) if len(files) == 1 else ""
    return folder / only if only.endswith(".gguf") else folder


def _draft_source(draft: str, base_dir: Path) -> str:
    """What a DRAFT line stores: a store name as written (resolved when the model runs, as
    FROM's names are), a path made absolute (the model runs from anywhere)."""
    if not _looks_local(draft):
        return draft
    path = (base_dir / draft).expanduser()
    if not path.exists():
        raise UserInputError(f"DRAFT {draft}: {path} does not exist")
    return str(path.resolve())


def _looks_local(text: str) -> bool:
    return text.startswith(("/", ".", "~")) or text.endswith(".gguf") or "\\" in text


def _adapter_files(store: Store, adapters: list[str], base_dir: Path) -> list[ManifestFile]:
    if len(adapters) > 1:
        raise UserInputError("a model takes one ADAPTER; merge adapters first, or create one each")
    path = (base_dir / adapters[0]).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        meta = read_header(path)[0]
        if meta.get("general.type") != "adapter" or meta.get("adapter.type") != "lora":
            raise UserInputError(
                f"ADAPTER {adapters[0]}: a GGUF {meta.get('general.type') or 'model'}, not a "
                "LoRA adapter (general.type 'adapter', adapter.type 'lora'); a model goes in FROM"
            )
        sources = [(ADAPTER_DIR + path.name, path)]
    elif path.is_dir():
        missing = [f for f in PEFT_FILES if not (path / f).is_file()]
        if missing:
            raise UserInputError(
                f"ADAPTER {adapters[0]}: a PEFT adapter folder needs {', '.join(PEFT_FILES)}; "
                f"{', '.join(missing)} missing"
            )
        sources = [(ADAPTER_DIR + f, path / f) for f in PEFT_FILES]
    else:
        raise UserInputError(
            f"ADAPTER {adapters[0]}: not a PEFT folder ({', '.join(PEFT_FILES)}) or a .gguf file"
        )
    out = []
    for rel, file in sources:
        digest, size = store.blobs.add_file(file)
        out.append(ManifestFile(rel, digest, size))
    return out


def modelfile_text(name: str, manifest: Manifest) -> str:
    """A Modelfile that recreates `name` (Ollama's `show --modelfile`)."""
    layers = layers_of(manifest)
    mf = Modelfile(
        from_=name if not layers else str(layers.get("from", name)),
        adapters=list(layers.get("adapters", [])),
        draft=layers.get("draft"),
        template=layers.get("template"),
        system=layers.get("system"),
        parameters=dict(layers.get("parameters", {})),
        messages=list(layers.get("messages", [])),
        licenses=list(layers.get("licenses", [])),
    )
    header = (
        '# Modelfile generated by "hearth show"\n'
        "# To build a new Modelfile based on this, replace FROM with:\n"
        f"# FROM {name}\n\n"
    )
    return header + mf.render()
