"""Content-addressed blobs: `$HEARTH_HOME/blobs/sha256-<hex>`. A blob is written to a
partial file, fsynced, and renamed into place under a per-blob file lock, so a reader
never sees half a blob and two writers of the same content leave one copy. Knows nothing
of manifests, names or model formats."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from filelock import FileLock

from hearth.errors import StoreError, UserInputError

CHUNK = 4 << 20  # 4 MiB: large enough to keep hashing at disk speed, small for progress
PREFIX = "sha256-"

# (bytes done, bytes total) -> None
ByteProgress = Callable[[int, int], None]


class ByteSource(Protocol):
    """What add_stream reads: a binary file, or an upload's body (b"" at its end)."""

    def read(self, size: int = -1, /) -> bytes: ...


def digest_to_filename(digest: str) -> str:
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or len(hexd) != 64 or not all(c in "0123456789abcdef" for c in hexd):
        raise StoreError(f"invalid blob digest {digest!r}; expected 'sha256:<64 hex digits>'")
    return PREFIX + hexd


def hash_file(path: Path, progress: ByteProgress | None = None) -> str:
    """`sha256:<hex>` of a file, streamed."""
    h = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return "sha256:" + h.hexdigest()


def _write_chunk(f: BinaryIO, chunk: bytes) -> None:
    # one place for every byte the store writes, so a full disk is handled in one place
    f.write(chunk)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """The blobs folder. Partial files live in `blobs/.partial/<pid>-<uuid>` until renamed."""

    def __init__(self, root: Path, locks: Path) -> None:
        self.root = root
        self.locks = locks
        self.partial = root / ".partial"

    def path(self, digest: str) -> Path:
        return self.root / digest_to_filename(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def lock(self, digest: str) -> FileLock:
        self.locks.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.locks / f"{digest_to_filename(digest)}.lock"))

    def digests(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            "sha256:" + p.name.removeprefix(PREFIX)
            for p in self.root.iterdir()
            if p.name.startswith(PREFIX) and p.is_file()
        )

    def add_file(self, source: Path, progress: ByteProgress | None = None) -> tuple[str, int]:
        """Copy `source` into the store, hashing on the way. Returns (digest, size)."""
        total = source.stat().st_size
        with source.open("rb") as src:
            return self.add_stream(src, total, progress)

    def add_stream(
        self,
        src: ByteSource,
        total: int,
        progress: ByteProgress | None = None,
        expected: str | None = None,
    ) -> tuple[str, int]:
        """Store what `src` holds (read to its end). With `expected` (a digest), bytes that
        hash to anything else are dropped before they get a name: UserInputError."""
        if expected is not None:
            digest_to_filename(expected)  # a malformed digest fails before any byte is read
        self.partial.mkdir(parents=True, exist_ok=True)
        tmp = self.partial / f"{os.getpid()}-{uuid.uuid4().hex}"
        h = hashlib.sha256()
        size = 0
        try:
            with tmp.open("wb") as f:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    _write_chunk(f, chunk)
                    size += len(chunk)
                    if progress:
                        progress(size, max(total, size))
                f.flush()
                os.fsync(f.fileno())
            digest = "sha256:" + h.hexdigest()
            if expected is not None and digest != expected:
                tmp.unlink()
                raise UserInputError(
                    f"digest mismatch: the {size} bytes sent hash to {digest}, not {expected}; "
                    "nothing was stored: send the file that digest names"
                )
            with self.lock(digest):
                final = self.path(digest)
                if final.is_file() and final.stat().st_size == size:
                    tmp.unlink()  # another pull got here first: keep one copy
                    os.utime(final)  # fresh mtime: tells a concurrent gc it is wanted
                else:
                    os.replace(tmp, final)
                    fsync_dir(self.root)
            return digest, size
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            if exc.errno == errno.ENOSPC:
                raise StoreError(
                    f"disk full while writing to {self.root}; nothing partial was kept. "
                    "Free some space (`hearth rm` unused models) and pull again"
                ) from exc
            raise StoreError(f"could not write a blob under {self.root}: {exc}") from exc
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    def remove(self, digest: str) -> None:
        with self.lock(digest), contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()

    def clean_partials(self) -> int:
        """Delete partial files left by processes that died mid-write (e.g. SIGKILL); returns
        the bytes freed."""
        freed = 0
        for p in self._stale_partials():
            with contextlib.suppress(FileNotFoundError):
                size = p.stat().st_size
                p.unlink()
                freed += size
        return freed

    def _stale_partials(self) -> Iterator[Path]:
        if not self.partial.is_dir():
            return
        for p in self.partial.iterdir():
            pid_text = p.name.split("-", 1)[0]
            if not pid_text.isdigit() or not pid_alive(int(pid_text)):
                yield p


def pid_alive(pid: int) -> bool:
    """Whether a process with this id still exists (its partial files are still being written)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
