"""enforce(): the call pull/run/serve make. A tiny GGUF written here, marked cc-by-nc-4.0,
is detected from its own metadata and checked against a real policy.toml and a real
SQLite database under a temporary HEARTH_HOME."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from hearth.config import load_settings
from hearth.errors import PolicyError
from hearth.licenses.acceptances import list_acceptances
from hearth.licenses.detect import LicenseDetection, detect_license
from hearth.licenses.gate import enforce
from hearth.licenses.policy import set_policy_value
from hearth.weights.gguf_metadata import read_gguf_metadata

DIGEST = "sha256:" + "ab" * 32


def tiny_gguf(path: Path, license: str | None) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny test model")
    if license is not None:
        writer.add_string("general.license", license)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def nc_model(tmp_path: Path) -> LicenseDetection:
    path = tiny_gguf(tmp_path / "tiny-nc.gguf", "cc-by-nc-4.0")
    return detect_license(read_gguf_metadata(path))


@pytest.mark.parametrize("use", ["pull", "run", "serve"])
def test_non_commercial_model_refused_then_allowed(hearth_home: Path, nc_model: LicenseDetection,
                                                   use: str) -> None:
    settings = load_settings()
    assert nc_model.license_id == "cc-by-nc-4.0"
    assert enforce(nc_model, use, settings, DIGEST) == []  # default policy: not commercial
    set_policy_value(settings, "commercial", "true")
    with pytest.raises(PolicyError) as info:
        enforce(nc_model, use, settings, DIGEST)
    assert "for NonCommercial purposes only" in str(info.value)
    assert info.value.clause in str(info.value)
    # --accept-license cannot make a non-commercial license commercial; nothing is recorded
    with pytest.raises(PolicyError):
        enforce(nc_model, use, settings, DIGEST, accept_license=True)
    assert list_acceptances(settings, DIGEST) == []
    # the policy changes: the organisation bought a commercial license
    set_policy_value(settings, "allow", "cc-by-nc-4.0")
    warnings = enforce(nc_model, use, settings, DIGEST)
    assert any("allow list" in w for w in warnings)


def test_unknown_license_warns_then_denied_then_accepted(hearth_home: Path, tmp_path: Path) -> None:
    settings = load_settings()
    unmarked = detect_license(read_gguf_metadata(tiny_gguf(tmp_path / "u.gguf", None)))
    assert unmarked.license_id == "unknown"
    warnings = enforce(unmarked, "run", settings, DIGEST)
    assert any("could not be identified" in w for w in warnings)
    set_policy_value(settings, "unknown", "deny")
    with pytest.raises(PolicyError, match='unknown = "deny"'):
        enforce(unmarked, "run", settings, DIGEST)
    with pytest.raises(PolicyError):
        enforce(None, "serve", settings, DIGEST)
    warnings = enforce(unmarked, "run", settings, DIGEST, accept_license=True)
    assert any("recorded acceptance of the unknown license" in w for w in warnings)
    # recorded once, then honoured without the flag, for this digest only
    enforce(unmarked, "serve", settings, DIGEST)
    with pytest.raises(PolicyError):
        enforce(unmarked, "serve", settings, "sha256:" + "cd" * 32)
    (acceptance,) = list_acceptances(settings, DIGEST)
    assert acceptance.license_id == "unknown" and acceptance.use == "run" and acceptance.user


def test_gemma_commercial_needs_acceptance(hearth_home: Path, gemma3_gguf: Path) -> None:
    settings = load_settings()
    detection = detect_license(read_gguf_metadata(gemma3_gguf))
    set_policy_value(settings, "commercial", "true")
    with pytest.raises(PolicyError, match="--accept-license"):
        enforce(detection, "pull", settings, DIGEST)
    warnings = enforce(detection, "pull", settings, DIGEST, accept_license=True)
    assert any("Prohibited Use Policy" in w for w in warnings)
    assert [a.license_id for a in list_acceptances(settings, DIGEST)] == ["gemma"]
    enforce(detection, "serve", settings, DIGEST, accept_license=True)  # already on record
    assert len(list_acceptances(settings, DIGEST)) == 1


def test_smollm2_commercial_ok(hearth_home: Path, smollm2_gguf: Path) -> None:
    settings = load_settings()
    set_policy_value(settings, "commercial", "true")
    detection = detect_license(read_gguf_metadata(smollm2_gguf))
    assert enforce(detection, "serve", settings, DIGEST) == []
    assert enforce("apache-2.0", "run", settings, DIGEST) == []


def test_gemma_terms_show_until_accepted_once(hearth_home: Path, gemma3_gguf: Path) -> None:
    """Default policy (not commercial): the terms show on every run until the user accepts
    them once (--accept-license records it, and shows them that once); then never again."""
    settings = load_settings()
    detection = detect_license(read_gguf_metadata(gemma3_gguf))
    first = enforce(detection, "run", settings, DIGEST)
    assert any("ai.google.dev/gemma/terms" in w for w in first)
    accepting = enforce(detection, "run", settings, DIGEST, accept_license=True)
    assert any("ai.google.dev/gemma/terms" in w for w in accepting)
    assert any("recorded acceptance of the gemma license" in w for w in accepting)
    assert enforce(detection, "run", settings, DIGEST) == []
    assert enforce(detection, "serve", settings, DIGEST, accept_license=True) == []
    assert len(list_acceptances(settings, DIGEST)) == 1
