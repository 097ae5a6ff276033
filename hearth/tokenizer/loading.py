"""Load a model's Tokenizer from a GGUF file or a Hugging Face folder.

- GGUF: the vocabulary is rebuilt from metadata (gguf_vocab.py); BOS/EOS come from the
  `tokenizer.ggml.*` keys, the template from `tokenizer.chat_template`.
- HF folder: `tokenizer.json` (the `tokenizers` library reads it as is), `tokenizer_config.json`
  (bos/eos/pad/unk tokens, add_bos_token / add_eos_token, chat_template),
  `chat_template.jinja` (where transformers 5 saves the template) and
  `generation_config.json` (the eos ids generation stops on).

Knows nothing of tensors or model configs; reads only tokenizer files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as Backend
from tokenizers import processors

from hearth.errors import CorruptModelError, UnsupportedModelError, UserInputError
from hearth.tokenizer.gguf_vocab import build_gguf_backend
from hearth.tokenizer.tokenizer import Tokenizer, VocabType
from hearth.weights.gguf_metadata import read_gguf_metadata

__all__ = ["load_tokenizer", "tokenizer_from_gguf_metadata"]

_GGUF_MAGIC = b"GGUF"


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer of the model at `path`: a `.gguf` file or an HF folder with tokenizer.json.

    Raises UserInputError when nothing usable is at `path`, UnsupportedModelError for a
    vocabulary kind hearth cannot rebuild, CorruptModelError for unreadable files."""
    path = Path(path)
    if path.is_file():
        with path.open("rb") as f:
            magic = f.read(4)
        if magic != _GGUF_MAGIC:
            raise UserInputError(
                f"{path} is not a GGUF file; give a .gguf file or a Hugging Face folder "
                "containing tokenizer.json"
            )
        return tokenizer_from_gguf_metadata(read_gguf_metadata(path))
    if path.is_dir():
        return _load_hf_folder(path)
    raise UserInputError(f"no model at {path}; give a .gguf file or a Hugging Face folder")


def tokenizer_from_gguf_metadata(metadata: dict[str, Any]) -> Tokenizer:
    """The Tokenizer described by a GGUF file's metadata (as read_gguf_metadata returns it)."""
    vocab = build_gguf_backend(metadata)
    _set_bos_eos(
        vocab.backend,
        vocab.bos_id if vocab.add_bos else None,
        vocab.eos_id if vocab.add_eos else None,
    )
    return Tokenizer(
        vocab.backend,
        vocab_type="byte_level" if vocab.vocab_type == "byte_level" else "byte_fallback",
        bos_id=vocab.bos_id,
        eos_id=vocab.eos_id,
        stop_ids=[i for i in (vocab.eot_id, vocab.eom_id) if i is not None],
        pad_id=vocab.pad_id,
        unk_id=vocab.unk_id,
        chat_template=metadata.get("tokenizer.chat_template"),
    )


def _load_hf_folder(folder: Path) -> Tokenizer:
    tokenizer_json = folder / "tokenizer.json"
    if not tokenizer_json.is_file():
        raise UnsupportedModelError(
            f"{folder} has no tokenizer.json; hearth reads HF tokenizers in the `tokenizers` "
            "format (tokenizer.json) — re-save the tokenizer with a current transformers "
            "(AutoTokenizer.from_pretrained(...).save_pretrained(...))"
        )
    try:
        backend = Backend.from_file(str(tokenizer_json))
    except Exception as exc:  # the Rust side raises plain Exception for any parse error
        raise CorruptModelError(f"cannot read {tokenizer_json}: {exc}") from exc
    config = _read_json(folder / "tokenizer_config.json")
    generation = _read_json(folder / "generation_config.json")

    def token_id(key: str) -> int | None:
        value = config.get(key)
        if isinstance(value, dict):  # older files serialize an AddedToken
            value = value.get("content")
        return backend.token_to_id(value) if isinstance(value, str) else None

    bos_id, eos_id = token_id("bos_token"), token_id("eos_token")
    gen_eos = generation.get("eos_token_id")
    stop_ids = [gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])
    if eos_id is None and stop_ids:
        eos_id = stop_ids[0]
    _apply_add_flags(backend, config, bos_id, eos_id)
    return Tokenizer(
        backend,
        vocab_type=_vocab_type(backend),
        bos_id=bos_id,
        eos_id=eos_id,
        stop_ids=stop_ids,
        pad_id=token_id("pad_token"),
        unk_id=token_id("unk_token"),
        chat_template=_chat_template(folder, config),
    )


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CorruptModelError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CorruptModelError(f"{path} is not a JSON object")
    return data


def _chat_template(folder: Path, config: dict[str, Any]) -> str | None:
    jinja_file = folder / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def _apply_add_flags(
    backend: Backend, config: dict[str, Any], bos_id: int | None, eos_id: int | None
) -> None:
    """Honour explicit add_bos_token / add_eos_token flags when tokenizer.json's own
    post-processor does otherwise (older folders keep the flag only in the config)."""
    if "add_bos_token" not in config and "add_eos_token" not in config:
        return
    probe = backend.encode("a", add_special_tokens=True).ids
    plain = backend.encode("a", add_special_tokens=False).ids
    adds_bos = len(probe) > len(plain) and bos_id is not None and probe[0] == bos_id
    adds_eos = len(probe) > len(plain) and eos_id is not None and probe[-1] == eos_id
    want_bos = bool(config.get("add_bos_token", adds_bos))
    want_eos = bool(config.get("add_eos_token", adds_eos))
    if (want_bos, want_eos) != (adds_bos, adds_eos):
        _set_bos_eos(backend, bos_id if want_bos else None, eos_id if want_eos else None)


def _set_bos_eos(backend: Backend, bos_id: int | None, eos_id: int | None) -> None:
    """Make `encode(..., add_special_tokens=True)` put BOS before and/or EOS after the text."""
    if bos_id is None and eos_id is None:
        backend.post_processor = None
        return
    specials: list[tuple[str, int]] = []
    single = "$A"
    pair = "$A $B:1"
    if bos_id is not None:
        bos = str(backend.id_to_token(bos_id))
        specials.append((bos, bos_id))
        single, pair = f"{bos} {single}", f"{bos} $A {bos}:1 $B:1"
    if eos_id is not None:
        eos = str(backend.id_to_token(eos_id))
        if eos_id != bos_id:
            specials.append((eos, eos_id))
        single, pair = f"{single} {eos}", f"{pair} {eos}:1"
    backend.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=specials
    )


def _vocab_type(backend: Backend) -> VocabType:
    """How the vocabulary spells bytes, from tokenizer.json's components (serialized one by
    one: the whole tokenizer can be tens of MB)."""
    if getattr(backend.model, "byte_fallback", False):
        return "byte_fallback"
    parts = [c.__getstate__() for c in (backend.pre_tokenizer, backend.decoder) if c is not None]
    return "byte_level" if any(b'"ByteLevel"' in part for part in parts) else "raw"
