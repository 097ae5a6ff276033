from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hearth.config import load_settings
from hearth.errors import (
    CorruptModelError,
    InvalidNameError,
    ModelNotFoundError,
    SourceError,
    StoreError,
    UnsupportedModelError,
    UserInputError,
)
from hearth.store import Store, blobs
from hearth.store.names import ModelName

REPO = Path(__file__).resolve().parents[2]


def _consistent(home: Path) -> list[str]:
    """Blob digests named by manifests, asserting each exists whole and nothing partial is
    left in the blobs folder."""
    named = []
    for manifest in (home / "manifests").glob("*/*.json"):
        for f in json.loads(manifest.read_text())["files"]:
            blob = home / "blobs" / ("sha256-" + f["digest"].removeprefix("sha256:"))
            assert blob.is_file() and blob.stat().st_size == f["size"], manifest
            named.append(f["digest"])
    partial = home / "blobs" / ".partial"
    assert not partial.exists() or list(partial.iterdir()) == []
    return named


def test_import_gguf_then_read_it_back(store: Store, smollm2_gguf: Path, hearth_home: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    record = store.import_path(smollm2_gguf, name="smol", progress=lambda *a: seen.append(a))
    assert record.name == "smol:latest" and record.format == "gguf"
    assert (record.architecture, record.quantization, record.context_length) == (
        "llama",
        "Q4_1",
        8192,
    )
    assert record.parameter_count == 134_515_008 and record.size == smollm2_gguf.stat().st_size
    assert record.license_id == "apache-2.0" and record.has_chat_template
    assert seen[-1] == ("copy smol:latest", record.size, record.size)
    assert store.get("smol") == record == store.list()[0]
    loc = store.locate("smol:latest")
    assert loc.format == "gguf" and loc.path.read_bytes()[:4] == b"GGUF"
    assert loc.path.stat().st_size == record.size and loc.path.parent == hearth_home / "blobs"
    assert _consistent(hearth_home) == [blobs.hash_file(smollm2_gguf)]
    # the manifest is the truth: a lost row (or a fresh database) is rebuilt from the blob
    (hearth_home / "hearth.db").unlink()
    fresh = Store(load_settings())
    assert fresh.get("smol").digest == record.digest
    assert fresh.get("smol").quantization == "Q4_1"


def test_import_hf_folder_and_locate_links(store: Store, tiny_hf: Path) -> None:
    record = store.import_path(tiny_hf)
    assert record.name == "tiny-llama:latest" and record.format == "hf"
    assert record.license_id == "mit" and record.has_chat_template
    loc = store.locate("tiny-llama")
    assert loc.path.name == record.digest.removeprefix("sha256:")
    for f in tiny_hf.iterdir():
        link = loc.path / f.name
        assert link.is_symlink() and link.read_bytes() == f.read_bytes()
    assert store.locate("tiny-llama").path == loc.path  # made once
    store.remove(["tiny-llama"])
    assert not loc.path.exists()


def test_rm_keeps_blobs_another_model_uses(store: Store, tiny_hf: Path, hearth_home: Path) -> None:
    store.import_path(tiny_hf, name="a")
    (tiny_hf / "README.md").write_text("---\nlicense: mit\n---\nchanged card\n")
    b = store.import_path(tiny_hf, name="b")  # shares every blob but the card
    assert b.digest != store.get("a").digest
    shared = set(_consistent(hearth_home))
    assert len(list((hearth_home / "blobs").glob("sha256-*"))) == len(shared)
    assert store.remove(["a"]) == ["a:latest"]
    assert store.verify().ok and store.get("b") == b
    assert len(list((hearth_home / "blobs").glob("sha256-*"))) == len(tiny_hf_files(tiny_hf))
    store.remove(["b"])
    assert list((hearth_home / "blobs").glob("sha256-*")) == [] and store.list() == []


def tiny_hf_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file()]


def test_cp_shares_blobs_and_rm_unknown_removes_nothing(store: Store, tiny_hf: Path) -> None:
    a = store.import_path(tiny_hf, name="a")
    c = store.copy("a", "c:v1")
    assert (c.name, c.digest, c.size) == ("c:v1", a.digest, a.size)
    with pytest.raises(ModelNotFoundError) as info:
        store.remove(["a", "nope"])
    assert str(info.value) == (
        "model 'nope' not found; `hearth list` shows local models, `hearth pull nope` fetches it"
    )
    assert [r.name for r in store.list()] == ["a:latest", "c:v1"]
    store.remove(["a"])
    assert store.verify("c:v1").ok


def test_verify_finds_a_flipped_byte_and_a_missing_blob(
    store: Store, tiny_hf: Path, hearth_home: Path
) -> None:
    store.import_path(tiny_hf, name="t")
    assert store.verify().ok
    blobs_by_size = sorted((hearth_home / "blobs").glob("sha256-*"), key=lambda p: p.stat().st_size)
    victim = blobs_by_size[-1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    report = store.verify("t")
    assert not report.ok and [p.status for p in report.problems] == ["corrupt"]
    assert report.problems[0].digest == "sha256:" + victim.name.removeprefix("sha256-")
    assert report.problems[0].models == ("t:latest",)
    blobs_by_size[0].unlink()
    assert sorted(p.status for p in store.verify().problems) == ["corrupt", "missing"]


def test_bad_inputs(store: Store, smollm2_gguf: Path, tmp_path: Path, hearth_home: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(
        UnsupportedModelError, match=r"expected a GGUF file .* or a Hugging Face folder"
    ):
        store.import_path(text)
    cut = tmp_path / "cut.gguf"
    with smollm2_gguf.open("rb") as f:
        cut.write_bytes(f.read(30_000_000))
    with pytest.raises(CorruptModelError, match="truncated"):
        store.import_path(cut)
    for bad in ("org/model", "..", "my model", "x" * 300):
        with pytest.raises(InvalidNameError, match="lowercase letters"):
            store.import_path(smollm2_gguf, name=bad)
    with pytest.raises(ModelNotFoundError, match="model 'ghost' not found"):
        store.get("ghost")
    with pytest.raises(SourceError, match="not in the catalog"):
        store.pull("ghost")
    assert (
        not (hearth_home / "blobs").exists() or list((hearth_home / "blobs").glob("sha256-*")) == []
    )
    assert store.list() == []


def test_disk_full_leaves_nothing_half_written(
    store: Store, tiny_hf: Path, hearth_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = 0

    def full_disk(f, chunk):  # type: ignore[no-untyped-def]
        nonlocal written
        if written >= 2:  # the first two files fit, the third finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        written += 1
        f.write(chunk)

    monkeypatch.setattr(blobs, "_write_chunk", full_disk)
    with pytest.raises(StoreError, match="disk full"):
        store.import_path(tiny_hf)
    assert list((hearth_home / "blobs" / ".partial").iterdir()) == []
    assert not (hearth_home / "manifests").exists() or not any(
        (hearth_home / "manifests").rglob("*.json")
    )
    assert store.list() == []
    monkeypatch.undo()
    assert store.import_path(tiny_hf).name == "tiny-llama:latest"  # the complete blobs are reused


def _hearth(*args: str, home: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HEARTH_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-m", "hearth", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_sigkill_mid_import_leaves_a_consistent_store(
    smollm2_gguf: Path, hearth_home: Path, tmp_path: Path
) -> None:
    partial = hearth_home / "blobs" / ".partial"
    proc = _hearth("import", str(smollm2_gguf), "--name", "big", home=hearth_home)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (partial.is_dir() and any(partial.iterdir())):
        time.sleep(0.002)
    assert proc.poll() is None, "the import finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()  # reaps it (a zombie would look alive) and closes the pipes
    assert proc.returncode == -signal.SIGKILL
    assert any(partial.iterdir())  # the kill left a partial file ...
    assert _consistent_ignoring_partials(hearth_home) == []  # ... and nothing else
    again = _hearth("import", str(smollm2_gguf), "--name", "big", home=hearth_home)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()
    assert _consistent(hearth_home) == [blobs.hash_file(smollm2_gguf)]  # partial cleaned


def _consistent_ignoring_partials(home: Path) -> list[str]:
    assert not (home / "manifests").exists() or not any((home / "manifests").rglob("*.json"))
    return [p.name for p in (home / "blobs").glob("sha256-*")]


def test_two_concurrent_imports_keep_one_copy(smollm2_gguf: Path, hearth_home: Path) -> None:
    procs = [
        _hearth("import", str(smollm2_gguf), "--name", "same", home=hearth_home) for _ in range(2)
    ]
    # reap both before asserting, so a failure never leaves a process or its pipes behind
    errors = [p.communicate(timeout=120)[1] for p in procs]
    for p, err in zip(procs, errors, strict=True):
        assert p.returncode == 0, err.decode()
    assert _consistent(hearth_home) == [blobs.hash_file(smollm2_gguf)]
    assert len(list((hearth_home / "blobs").glob("sha256-*"))) == 1
    store = Store(load_settings())
    assert [r.name for r in store.list()] == ["same:latest"] and store.verify().ok


def test_name_derived_from_file(store: Store, smollm2_gguf: Path, tmp_path: Path) -> None:
    copy = tmp_path / "My Model.gguf"
    shutil.copyfile(smollm2_gguf, copy)
    record = store.import_path(copy)
    assert ModelName.parse(record.name) == ModelName("my-model")


@pytest.mark.parametrize("damage", [b"null", b'"a string"', b"\xff\xfe\x00garbage\x80", b"{}"])
def test_a_damaged_manifest_blocks_only_its_own_model(
    store: Store, tiny_hf: Path, hearth_home: Path, damage: bytes
) -> None:
    store.import_path(tiny_hf, name="good")
    store.import_path(tiny_hf, name="broken")
    manifest = hearth_home / "manifests" / "broken" / "latest.json"
    manifest.write_bytes(damage)
    records, damaged = store.scan()
    assert [r.name for r in records] == ["good:latest"] == [r.name for r in store.list()]
    assert [d.name for d in damaged] == ["broken:latest"]
    assert str(manifest) in damaged[0].reason and "hearth rm broken:latest" in damaged[0].reason
    with pytest.raises(CorruptModelError, match="is damaged"):
        store.get("broken")
    report = store.verify()
    assert not report.ok and list(report.damaged) == ["broken:latest"] and not report.problems
    assert store.verify("good").ok
    store.import_path(tiny_hf, name="other")  # pulls and removals of others go on
    store.remove(["other"])
    assert store.locate("good").path.is_dir()
    assert store.remove(["broken"]) == ["broken:latest"]
    assert not manifest.exists() and store.scan()[1] == [] and store.verify().ok
    (hearth_home / "manifests" / "good" / "latest.json").write_bytes(damage)
    assert store.import_path(tiny_hf, name="good").name == "good:latest"  # pulling repairs
    assert store.verify().ok and [r.name for r in store.list()] == ["good:latest"]


def test_a_damaged_database_row_is_rebuilt(store: Store, tiny_hf: Path, hearth_home: Path) -> None:
    import sqlite3

    store.import_path(tiny_hf, name="t")
    with sqlite3.connect(hearth_home / "hearth.db") as db:
        db.execute("UPDATE store_models SET created = 'not a date', size = 'x'")
    fresh = Store(load_settings())
    (record,) = fresh.list()
    assert record.name == "t:latest" and record.size > 0
    assert fresh.get("t").created.year >= 2026  # the row was written again, readable now


def test_a_garbage_database_is_a_clear_error(
    store: Store, tiny_hf: Path, hearth_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.import_path(tiny_hf, name="t")
    # the same store beside a database file that is not SQLite (a new path: no connection
    # from before the damage is pooled)
    other = tmp_path / "other-home"
    for part in ("manifests", "blobs"):
        shutil.copytree(hearth_home / part, other / part)
    db = other / "hearth.db"
    db.write_bytes(b"this is not sqlite\n" * 300)
    monkeypatch.setenv("HEARTH_HOME", str(other))
    with pytest.raises(StoreError, match=f"the database {db} is not usable"):
        Store(load_settings()).get("t")


def test_over_http_local_paths_are_refused_alike(
    store: Store, smollm2_gguf: Path, tmp_path: Path
) -> None:
    messages = set()
    for path in (str(smollm2_gguf), str(tmp_path / "nothing-here.gguf"), "/etc/shadow", "~/x"):
        with pytest.raises(UserInputError) as err:
            store.pull(path, local_paths=False)
        messages.add(str(err.value))
    assert len(messages) == 1 and "hearth import PATH" in messages.pop()
    assert store.list() == []
    assert store.pull(str(smollm2_gguf), name="local").name == "local:latest"  # the CLI may


def test_copy_reads_its_source_under_the_commit_lock(
    store: Store, tiny_hf: Path, hearth_home: Path
) -> None:
    import threading

    from filelock import FileLock

    store.import_path(tiny_hf, name="x")
    outcome: list[BaseException | None] = []

    def copy() -> None:
        try:
            store.copy("x", "y")
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    # an `rm x` that holds the lock while the copy starts: the copy must see x gone
    with FileLock(str(hearth_home / "locks" / "commit.lock")):
        thread = threading.Thread(target=copy)
        thread.start()
        time.sleep(0.5)
        assert not outcome  # waiting for the lock
        (hearth_home / "manifests" / "x" / "latest.json").unlink()
        for blob in (hearth_home / "blobs").glob("sha256-*"):
            blob.unlink()
    thread.join(30)
    assert isinstance(outcome[0], ModelNotFoundError)
    assert not (hearth_home / "manifests" / "y").exists()


def test_prune_frees_unused_blobs_and_dead_staging(
    store: Store, tiny_hf: Path, hearth_home: Path
) -> None:
    store.import_path(tiny_hf, name="keep")
    assert store.prune().freed == 0
    orphan = hearth_home / "blobs" / ("sha256-" + "ab" * 32)
    orphan.write_bytes(b"o" * 1000)
    dead = hearth_home / "staging" / "pypi-x-1.0.abc"  # a pull killed mid-download
    (dead / "wheel").mkdir(parents=True)
    (dead / "wheel" / "x.whl").write_bytes(b"w" * 500)
    with store.staging.claim("pypi-live.def") as live:  # a pull still running
        (live / "part").write_bytes(b"l" * 200)
        report = store.prune()
        assert live.is_dir()
    assert (report.num_blobs, report.blob_bytes, report.staging_bytes) == (1, 1000, 500)
    assert report.to_dict()["freed_bytes"] == 1500
    assert not orphan.exists() and not dead.exists()
    assert list((hearth_home / "staging").iterdir()) == []
    assert store.verify().ok and store.locate("keep").path.is_dir()
    # a damaged manifest may name blobs: they stay until it is removed
    store.import_path(tiny_hf, name="gone")
    (hearth_home / "manifests" / "gone" / "latest.json").write_bytes(b"null")
    store.remove(["keep"])
    kept = store.prune()
    assert kept.num_blobs == 0 and kept.damaged == ("gone:latest",)
    store.remove(["gone"])
    assert store.prune().num_blobs == len(tiny_hf_files(tiny_hf))
    assert list((hearth_home / "blobs").glob("sha256-*")) == []
