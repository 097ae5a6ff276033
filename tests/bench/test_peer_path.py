"""The bench's llama.cpp peer imports the llama-cpp-python build it is pointed at (issue 32:
an AVX2-only build beside the installed native one): `--peer-path DIR` or the setting
bench_llama_cpp_path put DIR first on the worker's sys.path, and the JSON's peer build
says which one ran. A stand-in llama_cpp package (a folder on disk, imported by the real
worker process) shows the route; no real AVX2 build is needed here. A folder without one
is refused before anything loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import Cli

from hearth.bench.runner import _run_worker
from hearth.bench.workloads import make_workloads

FAKE_LLAMA_CPP = """
__version__ = "0.0.0-stand-in"


def llama_print_system_info():
    return b"CPU : AVX2 = 1 | AVX512 = 0 | STAND-IN = 1 |"


class Llama:
    def __init__(self, model_path, verbose=False, **settings):
        self.settings = settings

    def generate(self, prompt, **sampling):
        while True:
            yield 7
"""


@pytest.fixture
def stand_in(tmp_path: Path) -> Path:
    package = tmp_path / "peer" / "llama_cpp"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_LLAMA_CPP)
    return package.parent


def test_worker_imports_llama_cpp_from_the_peer_path(stand_in: Path, smollm2_gguf: Path) -> None:
    (decode,) = make_workloads(("decode",), 49152, quick=True)
    spec = {
        "path": str(smollm2_gguf),
        "threads": 1,
        "workloads": [decode.to_json()],
        "engine": "llama.cpp",
        "peer_path": str(stand_in),
    }
    result = _run_worker(spec)
    assert result["build"]["system_info"].endswith("STAND-IN = 1 |")
    assert result["build"]["path"] == str(stand_in / "llama_cpp")
    assert result["build"]["llama_cpp_python"] == "0.0.0-stand-in"
    (run,) = result["runs"]
    assert run["engine"] == "llama.cpp" and run["output_tokens"] == decode.max_tokens[0]


def test_the_setting_routes_the_bench_peer(
    stand_in: Path,
    smollm2_gguf: Path,
    hearth_home: Path,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEARTH_BENCH_LLAMA_CPP_PATH", str(stand_in))
    args = ("bench", str(smollm2_gguf), "--quick", "--json", "--threads", "1")
    code, out, err = cli(*args, "--scenario", "decode", "--peer", "llama.cpp")
    assert code == 0, err
    result = json.loads(out)
    assert "STAND-IN" in result["machine"]["peers"]["llama.cpp"]["system_info"]
    assert {r["engine"] for r in result["runs"]} == {"hearth", "llama.cpp"}


def test_a_peer_path_without_llama_cpp_is_refused(
    tmp_path: Path, smollm2_gguf: Path, hearth_home: Path, cli: Cli
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli("bench", str(smollm2_gguf), "--peer", "llama.cpp", "--peer-path", str(empty))
    assert code == 2, err
    assert f"--peer-path (bench_llama_cpp_path) {empty} holds no llama_cpp package" in err
    assert "-DGGML_AVX512=OFF" in err and f"--target {empty}" in err
