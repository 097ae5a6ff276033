"""Checks a Hugging Face model folder (config.json, *.safetensors possibly sharded with an
index, tokenizer files, README.md card) and reads its facts from config.json, the
safetensors headers and the card's YAML front matter. Knows nothing of tensors' values."""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from pathlib import Path
from typing import Any

from hearth.errors import CorruptModelError, UnsupportedModelError
from hearth.store.facts import ModelFacts

INDEX = "model.safetensors.index.json"
_MAX_HEADER = 100 << 20


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def model_files(folder: Path) -> list[Path]:
    """Every regular file in the folder, recursively, minus hidden ones (.git, .cache)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def hf_facts(folder: Path) -> ModelFacts:
    """Facts of an HF folder; raises UnsupportedModelError / CorruptModelError when it is
    not a complete safetensors checkpoint."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise CorruptModelError(f"{folder / 'config.json'} is not valid JSON ({exc})") from exc
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise UnsupportedModelError(
            f"{folder} has config.json but no *.safetensors weights; expected a Hugging Face "
            "folder with config.json and model*.safetensors (save with safe_serialization=True)"
        )
    index = folder / INDEX
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        missing = sorted({f for f in weight_map.values() if not (folder / f).is_file()})
        if missing:
            raise CorruptModelError(f"{folder} is missing shards named in {INDEX}: {missing}")
    params = 0
    dtypes: Counter[str] = Counter()
    for shard in shards:
        for dtype, n in _tensor_sizes(shard):
            params += n
            dtypes[dtype] += n
    text_config = config.get("text_config") or {}
    ctx = config.get("max_position_embeddings") or text_config.get("max_position_embeddings")
    quant_cfg = config.get("quantization_config") or {}
    quant = str(quant_cfg.get("quant_method", "")).upper() or (
        dtypes.most_common(1)[0][0] if dtypes else "unknown"
    )
    card = _read_text(folder / "README.md")
    license_text = _read_text(folder / "LICENSE") or _read_text(folder / "LICENSE.txt")
    license_raw = _front_matter_value(card, "license") if card else None
    architecture = str(config.get("model_type") or text_config.get("model_type") or "unknown")
    kind = model_kind(folder)
    return ModelFacts(
        format="hf",
        # the kind rides on the architecture column ("bert+embedding"): ModelRecord.kind
        architecture=architecture if kind == "generation" else f"{architecture}+{kind}",
        parameter_count=params,
        quantization=quant,
        context_length=int(ctx) if isinstance(ctx, int) else None,
        license_raw=license_raw,
        chat_template=_chat_template(folder),
        license_inputs={"card_text": card, "license_text": license_text},
    )


# BERT-family model types: an encoder is an embedding model unless it classifies
ENCODER_MODEL_TYPES = ("bert", "roberta", "xlm-roberta")


def model_kind(folder: Path) -> str:
    """The one rule for what a folder's model does: "rerank" (a *ForSequenceClassification
    config: a cross-encoder), "embedding" (a sentence-transformers folder, or a bare
    BERT-family encoder) or "generation"."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return "generation"
    if not isinstance(config, dict):
        return "generation"
    archs = [str(a) for a in config.get("architectures") or []]
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "rerank"
    if (folder / "modules.json").is_file() or config.get("model_type") in ENCODER_MODEL_TYPES:
        return "embedding"
    return "generation"


def _tensor_sizes(shard: Path) -> list[tuple[str, int]]:
    """(dtype, number of elements) per tensor, from the safetensors JSON header."""
    size = shard.stat().st_size
    try:
        with shard.open("rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > min(_MAX_HEADER, size - 8):
                raise ValueError(f"header length {header_len} exceeds the file")
            header: dict[str, Any] = json.loads(f.read(header_len))
    except (OSError, ValueError, struct.error) as exc:
        raise CorruptModelError(f"{shard} is not a valid safetensors file ({exc})") from exc
    out = []
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        out.append((str(info["dtype"]), math.prod(info["shape"])))
        end = max(end, int(info["data_offsets"][1]))
    if 8 + header_len + end > size:
        raise CorruptModelError(f"{shard} is truncated: download it again")
    return out


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _front_matter_value(card: str, key: str) -> str | None:
    """A top-level scalar from the card's `---` YAML front matter (no YAML library needed
    for the one key we read)."""
    lines = card.splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for line in lines[1:]:
        if line.strip() == "---":
            break
        k, sep, v = line.partition(":")
        if sep and k == key and v.strip():
            return v.strip().strip("'\"")
    return None


def _chat_template(folder: Path) -> str | None:
    jinja = _read_text(folder / "chat_template.jinja")
    if jinja:
        return jinja
    try:
        tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return None
    template = tok_config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) else None
