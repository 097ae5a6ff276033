"""The license gate at pull/import: a model whose license the policy forbids is refused
before it is stored (no manifest, no blob left behind), and stored once the policy or an
explicit acceptance allows it."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from hearth.cli import main
from hearth.config import load_settings
from hearth.errors import ModelNotFoundError, PolicyError
from hearth.licenses.acceptances import list_acceptances
from hearth.licenses.policy import set_policy_value
from hearth.store import Store


def _gguf(path: Path, license: str) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("general.license", license)
    writer.add_tensor("token_embd.weight", np.arange(32, dtype=np.float32).reshape(4, 8))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_non_commercial_refused_at_import_and_nothing_stored(
    hearth_home: Path, tmp_path: Path
) -> None:
    settings = load_settings()
    set_policy_value(settings, "commercial", "true")
    store = Store(settings)
    path = _gguf(tmp_path / "nc.gguf", "cc-by-nc-4.0")
    with pytest.raises(PolicyError) as info:
        store.import_path(path, name="nc")
    assert "NonCommercial" in str(info.value) and info.value.remedy
    with pytest.raises(ModelNotFoundError):
        store.get("nc")
    assert store.blobs.digests() == []
    # the organisation allows it: the same import now succeeds
    set_policy_value(settings, "allow", "cc-by-nc-4.0")
    warnings: list[str] = []
    record = store.import_path(path, name="nc", warn=warnings.append)
    assert record.license_id == "cc-by-nc-4.0"
    assert any("allow list" in w for w in warnings)


def test_conditional_license_needs_acceptance_which_is_recorded(
    hearth_home: Path, tmp_path: Path
) -> None:
    settings = load_settings()
    set_policy_value(settings, "commercial", "true")
    store = Store(settings)
    path = _gguf(tmp_path / "gem.gguf", "gemma")
    with pytest.raises(PolicyError):
        store.import_path(path, name="gem")
    record = store.import_path(path, name="gem", accept_license=True)
    (acceptance,) = list_acceptances(settings, record.digest)
    assert acceptance.license_id == "gemma" and acceptance.use == "pull"


def test_cli_pull_refusal_exits_3_with_clause(
    hearth_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_policy_value(load_settings(), "commercial", "true")
    path = _gguf(tmp_path / "nc.gguf", "cc-by-nc-4.0")
    with pytest.raises(SystemExit) as info:
        main(["pull", str(path), "--name", "nc"])
    assert info.value.code == 3
    err = capsys.readouterr().err
    assert "refused by the license policy" in err and "Clause:" in err
