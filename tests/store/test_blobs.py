from __future__ import annotations

import errno
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hearth.errors import StoreError
from hearth.store import blobs
from hearth.store.blobs import BlobStore, hash_file


@pytest.fixture
def bs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", tmp_path / "locks")


def test_add_is_content_addressed_and_deduplicated(bs: BlobStore, tmp_path: Path) -> None:
    data = b"hearth" * 1000
    src = tmp_path / "f.bin"
    src.write_bytes(data)
    seen: list[tuple[int, int]] = []
    digest, size = bs.add_file(src, lambda d, t: seen.append((d, t)))
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert size == len(data) and seen[-1] == (len(data), len(data))
    assert bs.path(digest).read_bytes() == data
    assert bs.add_stream(io.BytesIO(data), len(data)) == (digest, size)
    assert bs.digests() == [digest]
    assert list(bs.partial.iterdir()) == []
    assert hash_file(bs.path(digest)) == digest
    bs.remove(digest)
    assert not bs.has(digest) and bs.digests() == []


def test_disk_full_leaves_nothing(bs: BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real = blobs._write_chunk

    def full_after_one_chunk(f, chunk):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, chunk)

    monkeypatch.setattr(blobs, "_write_chunk", full_after_one_chunk)
    data = io.BytesIO(b"\0" * (blobs.CHUNK * 2 + 5))
    with pytest.raises(StoreError, match="disk full"):
        bs.add_stream(data, blobs.CHUNK * 2 + 5)
    assert calls == 2
    assert bs.digests() == [] and list(bs.partial.iterdir()) == []


def test_partials_of_dead_processes_are_cleaned(bs: BlobStore) -> None:
    bs.partial.mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = bs.partial / f"{int(dead.stdout)}-abc"
    mine = bs.partial / f"{os.getpid()}-def"
    stale.write_bytes(b"xyz")
    mine.write_bytes(b"y")
    assert bs.clean_partials() == 3  # bytes freed
    assert not stale.exists() and mine.exists()


def test_bad_digest_is_refused(bs: BlobStore) -> None:
    with pytest.raises(StoreError, match="expected 'sha256:<64 hex digits>'"):
        bs.path("sha256:../../etc/passwd")


def test_add_stream_checks_the_expected_digest(tmp_path: Path) -> None:
    from hearth.errors import UserInputError

    store = BlobStore(tmp_path / "blobs", tmp_path / "locks")
    data = b"weights" * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert store.add_stream(io.BytesIO(data), len(data), expected=digest) == (digest, len(data))
    wrong = "sha256:" + "0" * 64
    with pytest.raises(UserInputError, match="digest mismatch"):
        store.add_stream(io.BytesIO(b"other bytes"), 11, expected=wrong)
    assert not store.has(wrong) and store.digests() == [digest]
    assert not any((tmp_path / "blobs" / ".partial").iterdir())
    with pytest.raises(StoreError, match="invalid blob digest"):
        store.add_stream(io.BytesIO(data), len(data), expected="sha256:nothex")
