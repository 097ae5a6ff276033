"""The license facts table: every required id present, every entry complete and coherent."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest

from hearth.licenses.facts import LicenseFacts, all_facts, get_facts, stricter

REQUIRED = [
    "apache-2.0", "mit", "bsd-3-clause", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0",
    "cc-by-nc-sa-4.0", "openrail", "openrail-m", "llama2", "llama3", "llama3.1", "llama3.2",
    "llama3.3", "llama4", "gemma", "qwen", "qwen-research", "deepseek", "mrl", "mnpl",
    "falcon", "unknown",
]
URL = re.compile(r"^https://[^\s]+$")


def test_every_required_id_present() -> None:
    assert set(REQUIRED) <= set(all_facts())


@pytest.mark.parametrize("license_id", REQUIRED)
def test_entry_complete(license_id: str) -> None:
    facts = all_facts()[license_id]
    for f in fields(LicenseFacts):
        value = getattr(facts, f.name)
        if license_id == "unknown" and f.name == "source_url":
            continue
        if f.name in ("user_cap", "link_patterns", "fingerprints", "acceptable_use_policy",
                      "user_cap_clause", "requires_acceptance"):
            continue  # may legitimately be empty / None / False; checked below
        assert value not in ("", None, ()), f"{license_id}.{f.name} is empty"
    if license_id != "unknown":
        assert URL.match(facts.source_url), facts.source_url
        assert facts.fingerprints, "a LICENSE file must be recognisable"
    if facts.acceptable_use_policy:
        assert URL.match(facts.acceptable_use_policy)
    assert (facts.user_cap is None) == (facts.user_cap_clause == "")
    assert len(facts.summary) < 240 and "\n" not in facts.summary  # one line


def test_known_legal_facts() -> None:
    # the facts people most rely on, checked against the license texts
    assert get_facts("apache-2.0").commercial_use == "yes"
    for lid in ("llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4"):
        assert get_facts(lid).commercial_use == "conditional"
        assert get_facts(lid).user_cap == 700_000_000
    assert get_facts("llama2").outputs_may_train_other_models == "no"
    assert get_facts("llama3").outputs_may_train_other_models == "no"
    assert get_facts("llama3.1").outputs_may_train_other_models == "conditional"
    assert "name beginning with \"Llama\"" in get_facts("llama3.1").derivative_obligations
    assert "Built with Llama" in get_facts("llama3.3").attribution
    assert get_facts("gemma").commercial_use == "conditional"
    assert "prohibited_use_policy" in get_facts("gemma").acceptable_use_policy
    assert get_facts("qwen").user_cap == 100_000_000
    for lid in ("cc-by-nc-4.0", "cc-by-nc-sa-4.0", "qwen-research", "mrl", "mnpl"):
        assert get_facts(lid).commercial_use == "no"
    assert "NonCommercial" in get_facts("cc-by-nc-4.0").commercial_clause


def test_unknown_ids_fall_back_and_strictness_orders() -> None:
    assert get_facts("no-such-license").id == "unknown"
    assert stricter("apache-2.0", "gemma") == "gemma"
    assert stricter("gemma", "cc-by-nc-4.0") == "cc-by-nc-4.0"
    assert stricter("apache-2.0", "unknown") == "unknown"
    assert stricter("unknown", "mnpl") == "mnpl"
    assert stricter("llama3.1", "qwen") == "qwen"  # smaller user cap
    assert stricter("mit", "apache-2.0") == "mit"  # a tie keeps the first


def test_bad_entry_rejected() -> None:
    good = all_facts()["mit"].to_dict()
    good.pop("id")
    with pytest.raises(ValueError, match="commercial_use"):
        LicenseFacts(id="x", **{**good, "commercial_use": "maybe",
                                "aliases": (), "link_patterns": (), "fingerprints": ()})


def test_commercial_marker() -> None:
    from hearth.licenses import commercial_marker

    assert [commercial_marker(x) for x in ("apache-2.0", "gemma", "cc-by-nc-4.0", None)] == [
        "yes", "cond", "no", "?"]


def test_public_api_exported() -> None:
    import hearth.licenses as lic

    assert set(lic.__all__) == {n for n in dir(lic) if not n.startswith("_") and n not in {
        "acceptances", "card", "check", "detect", "facts", "fingerprint", "gate", "normalize",
        "policy"}}
