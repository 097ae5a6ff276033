from __future__ import annotations

import json

import pytest

from hearth.store.facts import ModelFacts, detect_license


def _facts(**inputs: object) -> ModelFacts:
    return ModelFacts("hf", "llama", 10, "F16", 256, None, None, license_inputs=dict(inputs))


def test_every_signal_reaches_the_detector() -> None:
    lic = detect_license(
        _facts(
            gguf_metadata={"general.license": "apache-2.0"},
            card_text="---\nlicense: apache-2.0\n---\n",
            catalog_license="apache-2.0",
        )
    )
    assert lic.license_id == "apache-2.0"
    signals = json.loads(lic.signals_json)
    assert sorted(s["source"] for s in signals) == ["card", "catalog", "gguf"]
    assert all(s["license_id"] == "apache-2.0" for s in signals)


def test_no_signal_is_unknown_and_conflicts_take_the_strictest() -> None:
    assert detect_license(_facts()).license_id == "unknown"
    mixed = detect_license(
        _facts(gguf_metadata={"general.license": "apache-2.0"}, catalog_license="gemma")
    )
    assert mixed.license_id == "gemma"


def test_facts_are_checked() -> None:
    with pytest.raises(ValueError, match="parameter_count"):
        ModelFacts("gguf", "llama", -1, "Q4_1", None, None, None)
