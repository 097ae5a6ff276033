"""`hearth license NAME` and `hearth policy show|set`, through the real CLI entry point,
against a real store (a tiny GGUF imported here) and a temporary HEARTH_HOME."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from cli_runner import Cli

from hearth.config import load_settings
from hearth.errors import PolicyError
from hearth.licenses.detect import LicenseDetection
from hearth.licenses.gate import enforce


def _tiny(path: Path, license: str) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("general.license", license)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_license_of_a_license_id(hearth_home: Path, cli: Cli) -> None:
    code, out, _ = cli("license", "gemma")
    assert code == 0
    assert "gemma — Gemma Terms of Use" in out
    assert "conditional" in out
    assert "https://ai.google.dev/gemma/prohibited_use_policy" in out
    assert "pull: allowed" in out
    code, out, _ = cli("license", "Apache 2.0", "--json")
    data = json.loads(out)
    assert data["model"] is None and data["license_id"] == "apache-2.0"
    assert data["facts"]["commercial_use"] == "yes"
    assert "fingerprints" not in data["facts"]


def test_license_unknown_name(hearth_home: Path, cli: Cli) -> None:
    code, _, err = cli("license", "no-such-thing")
    assert code == 1
    assert "neither a stored model nor a license id" in err


def test_license_of_a_stored_model_and_policy_flow(
    hearth_home: Path, tmp_path: Path, cli: Cli
) -> None:
    from hearth.store import Store

    settings = load_settings()
    record = Store(settings).import_path(_tiny(tmp_path / "nc.gguf", "cc-by-nc-4.0"), "tiny-nc:1")
    code, out, _ = cli("license", "tiny-nc:1")
    assert code == 0
    assert "tiny-nc:1: cc-by-nc-4.0" in out
    assert "gguf: cc-by-nc-4.0" in out
    assert "run: allowed" in out

    code, out, _ = cli("policy", "set", "commercial", "true")
    assert code == 0 and "commercial = true" in out
    code, out, _ = cli("license", "tiny-nc:1", "--json")
    data = json.loads(out)
    assert data["model"]["digest"] == record.digest
    for use in ("pull", "run", "serve"):
        assert data["policy"][use]["allowed"] is False
        assert "NonCommercial purposes only" in data["policy"][use]["clause"]
    # what pull/run/serve do with this model: the gate refuses, the CLI exits 3
    with pytest.raises(PolicyError) as info:
        enforce(LicenseDetection.from_dict(data), "serve", settings, record.digest)
    assert info.value.exit_code == 3

    code, out, _ = cli("policy", "set", "allow", "cc-by-nc-4.0")
    assert code == 0
    code, out, _ = cli("license", "tiny-nc:1", "--json")
    assert json.loads(out)["policy"]["serve"] == {"allowed": True, "basis": "allow list"}

    code, out, _ = cli("policy", "show", "--json")
    shown = json.loads(out)
    assert shown["exists"] is True
    assert shown["policy"]["commercial"] is True
    assert shown["policy"]["allow"] == ["cc-by-nc-4.0"]


def test_policy_show_defaults_and_acceptances(hearth_home: Path, cli: Cli) -> None:
    code, out, _ = cli("policy", "show")
    assert code == 0
    assert "not written yet: defaults" in out
    assert "commercial" in out and "false" in out
    settings = load_settings()
    cli("policy", "set", "commercial", "true")
    enforce("gemma", "pull", settings, "sha256:" + "12" * 32, accept_license=True)
    code, out, _ = cli("policy", "show")
    assert "gemma for 121212121212 by" in out


def test_policy_set_rejects_bad_values(hearth_home: Path, cli: Cli) -> None:
    code, _, err = cli("policy", "set", "unknown", "ignore")
    assert code == 2
    assert "unknown must be" in err
    code, _, err = cli("policy", "set", "colour", "red")
    assert code == 2 and "known: commercial" in err


def test_cli_module_does_not_import_heavy_layers() -> None:
    # the CLI must start fast: registering the license verbs loads neither the licenses
    # layer (YAML, SQLAlchemy tables) nor the store; each verb imports them when it runs
    code = (
        "import sys, hearth.cli.license_cmds;"
        "print(sorted(m for m in sys.modules if m.startswith(('hearth.licenses', 'hearth.store', 'yaml'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
