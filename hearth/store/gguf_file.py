"""Checks a GGUF file and reads its model-card facts with `gguf.GGUFReader` (the store
sits below `weights/`, so it reads the header itself). Knows nothing of tensors' values."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from hearth.errors import CorruptModelError
from hearth.store.facts import ModelFacts

MAGIC = b"GGUF"


def is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


def gguf_facts(path: Path) -> ModelFacts:
    """Facts of a GGUF file; raises CorruptModelError for a truncated or unreadable file."""
    from gguf import GGUFReader, LlamaFileType

    try:
        reader = GGUFReader(path)
    except Exception as exc:  # the reader raises bare ValueError/IndexError/struct errors
        raise CorruptModelError(
            f"{path} is not a readable GGUF file ({type(exc).__name__}: {exc}); "
            "it may be truncated: download it again"
        ) from exc
    size = path.stat().st_size
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if not reader.tensors or end > size:
        raise CorruptModelError(
            f"{path} is truncated: its tensors need {end} bytes but the file has {size}; "
            "download it again"
        )
    meta = _scalar_metadata(reader)
    arch = str(meta.get("general.architecture", "unknown"))
    ctx = meta.get(f"{arch}.context_length")
    quant = None
    file_type = meta.get("general.file_type")
    if isinstance(file_type, int):
        try:
            quant = LlamaFileType(file_type).name.removeprefix("MOSTLY_")
        except ValueError:
            quant = None
    if quant is None or quant == "GUESSED":
        by_elements: Counter[str] = Counter()
        for t in reader.tensors:
            by_elements[t.tensor_type.name] += int(t.n_elements)
        quant = by_elements.most_common(1)[0][0]
    template = meta.get("tokenizer.chat_template")
    license_raw = meta.get("general.license")
    return ModelFacts(
        format="gguf",
        architecture=arch,
        parameter_count=sum(int(t.n_elements) for t in reader.tensors),
        quantization=quant,
        context_length=int(ctx) if isinstance(ctx, int) else None,
        license_raw=str(license_raw) if license_raw is not None else None,
        chat_template=str(template) if template else None,
        license_inputs={"gguf_metadata": meta},
    )


def _scalar_metadata(reader: Any) -> dict[str, Any]:
    """Key/value metadata without the big arrays (vocabulary, merges, scores)."""
    meta: dict[str, Any] = {}
    for key, fld in reader.fields.items():
        if key.startswith("GGUF.") or key.startswith("tokenizer.ggml."):
            continue
        try:
            value = fld.contents()
        except Exception:  # an odd field must not stop an import; it is only metadata
            continue
        if isinstance(value, list) and len(value) > 64:
            continue
        meta[key] = value
    return meta
