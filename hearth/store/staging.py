"""The staging folder (`$HEARTH_HOME/staging`): where a pull downloads and unpacks before
the files go into blobs. Each live pull holds an exclusive lock on its own entry for as
long as it runs, so whatever is left unlocked was left by a pull that died (SIGKILL, power
loss) and can be removed without asking anyone. Knows nothing of sources, blobs or names.

POSIX `flock` locks (not pids) mark a live entry: the kernel drops them when the holder
dies, a reused pid cannot keep a dead pull's leftovers alive, and two pulls in one
process (a server's threads) each see the other's lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

LOCK_SUFFIX = ".lock"


class StagingArea:
    def __init__(self, root: Path) -> None:
        self.root = root

    @contextlib.contextmanager
    def claim(self, name: str, keep_on_error: bool = False) -> Iterator[Path]:
        """An entry `root/name` locked for this pull and removed on the way out; with
        `keep_on_error`, a failed pull leaves it to resume from (a Hub download). Give a
        unique name unless the entry is meant to be resumed: a second claim of a held name
        waits for the first."""
        self.root.mkdir(parents=True, exist_ok=True)
        entry = self.root / name
        fd = _lock(entry)
        keep = False
        try:
            entry.mkdir(exist_ok=True)
            try:
                yield entry
            except BaseException:
                keep = keep_on_error
                raise
        finally:
            try:
                if not keep:
                    _remove(entry)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(_lock_path(entry))
            finally:
                os.close(fd)  # closing the descriptor drops the lock

    def clean(self, keep: tuple[str, ...] = ()) -> int:
        """Remove every entry no live pull holds, except names starting with one of `keep`.
        Returns the bytes freed."""
        if not self.root.is_dir():
            return 0
        freed = 0
        for entry in sorted(self.root.iterdir()):
            if entry.name.endswith(LOCK_SUFFIX):
                base = entry.with_name(entry.name.removesuffix(LOCK_SUFFIX))
                if base.exists():
                    continue  # handled with its entry
                entry = base
            if entry.name.startswith(keep):
                continue
            freed += self._remove_if_stale(entry)
        return freed

    def _remove_if_stale(self, entry: Path) -> int:
        lock = _lock_path(entry)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # a live pull holds it
            size = _size(entry)
            _remove(entry)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)  # unlinked while held: see _lock for the other side
            return size
        finally:
            os.close(fd)


def unique_name(prefix: str) -> str:
    """A name no other pull will claim: for work that is never resumed."""
    return f"{prefix}.{uuid.uuid4().hex[:12]}"


def _lock_path(entry: Path) -> Path:
    return entry.with_name(entry.name + LOCK_SUFFIX)


def _lock(entry: Path) -> int:
    """Hold the entry's lock. A cleaner unlinks a lock file while holding it, so a lock taken
    on a file that is no longer (or no longer the same) at its path is retried."""
    path = _lock_path(entry)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _size(entry: Path) -> int:
    if entry.is_symlink() or entry.is_file():
        return entry.lstat().st_size
    if not entry.is_dir():
        return 0
    total = 0
    for p in entry.rglob("*"):
        with contextlib.suppress(OSError):
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
    return total


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
