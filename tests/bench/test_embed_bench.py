"""The embed scenario on the real all-MiniLM with sentence-transformers as the peer, at a
small size: the JSON's shape, the sentence lengths and the cosine check (never speed)."""

from __future__ import annotations

from pathlib import Path

from hearth.bench.embed_bench import run_embed_bench


def test_embed_bench_against_sentence_transformers(all_minilm_folder: Path) -> None:
    result = run_embed_bench(all_minilm_folder, 1, ("sentence-transformers",), count=40, repeats=1)
    engines = [r["engine"] for r in result["runs"]]
    # "hearth" is the auto dtype; the float32 road runs beside it when auto chose bfloat16
    if result["dtype"] == "float32":
        assert engines == ["hearth", "sentence-transformers"]
    else:
        assert engines == ["hearth", "hearth-float32", "sentence-transformers"]
        assert result["min_cosine_float32"] >= 0.9999
    assert result["sentences"] == 40 and result["tokens"]["min"] >= 10
    assert result["tokens"]["max"] <= 200
    assert result["min_cosine"] >= 0.9999
    assert result["ratio"] > 0
