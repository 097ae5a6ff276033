"""Rebuild a GGUF file's vocabulary as a `tokenizers.Tokenizer`.

A GGUF has no tokenizer.json: it stores the vocabulary under llama.cpp's keys
(`tokenizer.ggml.model`, `.tokens`, `.token_type`, `.scores`, `.merges`, `.pre`, special ids).
Two kinds cover the families hearth runs:

- `gpt2`: byte-level BPE (Llama 3, Qwen, SmolLM, DeepSeek...). Tokens are spelled in GPT-2's
  byte alphabet, the merges are in the file, and the splitting regex comes from `.pre`
  (see pretokenizers.py).
- `llama`: SentencePiece (Llama 2, Mistral, Gemma...). Tokens use `▁` for a space and
  `<0xAB>` byte tokens; SentencePiece-BPE is rebuilt as a HF BPE with byte fallback whose
  merges are derived from the vocabulary, best piece first.

Token types mark control tokens (special: `<|im_end|>`, `<end_of_turn>`) and user-defined ones
(matched whole in text, not special). Knows nothing of files or chat templates: it takes the
metadata dict `weights.gguf_metadata.read_gguf_metadata` returns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers

from hearth.errors import UnsupportedModelError
from hearth.tokenizer.pretokenizers import bpe_split_for

__all__ = ["GGUFVocab", "build_gguf_backend", "byte_alphabet"]

# llama.cpp's token types (gguf.TokenType)
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6

# Architectures whose SentencePiece files need Gemma's treatment (see _gemma_tokens).
_GEMMA_ARCHS = frozenset({"gemma", "gemma2", "gemma3", "gemma3n"})
SUPPORTED_MODELS = ("gpt2", "llama")


def byte_alphabet() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character (the byte-level alphabet):
    printable Latin-1 bytes stand for themselves, the rest are shifted past U+0100."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


@dataclass(frozen=True)
class GGUFVocab:
    """A rebuilt vocabulary and the facts about it the Tokenizer needs."""

    backend: Tokenizer
    vocab_type: str  # "byte_level" | "byte_fallback"
    bos_id: int | None
    eos_id: int | None
    eot_id: int | None
    eom_id: int | None
    pad_id: int | None
    unk_id: int | None
    add_bos: bool
    add_eos: bool
    control_ids: frozenset[int]


def build_gguf_backend(metadata: Mapping[str, Any]) -> GGUFVocab:
    """Build the tokenizer a GGUF file's metadata describes.

    Raises UnsupportedModelError naming `tokenizer.ggml.model` when it is not one hearth
    rebuilds, or when the vocabulary is missing.
    """
    model = metadata.get("tokenizer.ggml.model")
    tokens: list[str] | None = metadata.get("tokenizer.ggml.tokens")
    if not tokens:
        raise UnsupportedModelError(
            "this GGUF file has no tokenizer.ggml.tokens (no vocabulary); hearth needs a file "
            "converted with its tokenizer — re-convert it with llama.cpp's convert_hf_to_gguf.py"
        )
    token_types: Sequence[int] = metadata.get("tokenizer.ggml.token_type") or [_NORMAL] * len(
        tokens
    )
    arch = str(metadata.get("general.architecture", ""))

    def special(key: str) -> int | None:
        value = metadata.get(f"tokenizer.ggml.{key}_token_id")
        return int(value) if value is not None and 0 <= int(value) < len(tokens) else None

    if model == "gpt2":
        backend, vocab_type = _byte_level_bpe(metadata, tokens), "byte_level"
        add_bos_default = bpe_split_for(metadata.get("tokenizer.ggml.pre")).add_bos_default
    elif model == "llama":
        add_prefix = bool(metadata.get("tokenizer.ggml.add_space_prefix", True))
        backend = _sentencepiece_bpe(metadata, tokens, arch=arch, add_prefix=add_prefix)
        vocab_type, add_bos_default = "byte_fallback", True
    else:
        raise UnsupportedModelError(
            f"GGUF tokenizer.ggml.model {model!r} is not supported; hearth rebuilds "
            f"{', '.join(SUPPORTED_MODELS)} vocabularies"
        )

    control = _add_special_tokens(backend, tokens, token_types, byte_level=model == "gpt2")
    return GGUFVocab(
        backend=backend,
        vocab_type=vocab_type,
        bos_id=special("bos"),
        eos_id=special("eos"),
        eot_id=special("eot"),
        eom_id=special("eom"),
        pad_id=special("padding"),
        unk_id=special("unknown"),
        add_bos=bool(metadata.get("tokenizer.ggml.add_bos_token", add_bos_default)),
        add_eos=bool(metadata.get("tokenizer.ggml.add_eos_token", False)),
        control_ids=control,
    )


def _byte_level_bpe(metadata: Mapping[str, Any], tokens: list[str]) -> Tokenizer:
    alphabet = byte_alphabet()
    letters = set(alphabet.values())
    # A token outside the alphabet (an added token written as raw text) is respelled byte by
    # byte so the model can still produce it; control tokens keep their raw spelling below.
    vocab = {
        tok
        if set(tok) <= letters
        else "".join(alphabet[b] for b in tok.encode("utf-8", "surrogateescape")): i
        for i, tok in enumerate(tokens)
    }
    merges = _split_merges(metadata.get("tokenizer.ggml.merges") or [])
    split = bpe_split_for(metadata.get("tokenizer.ggml.pre"))
    backend = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, ignore_merges=split.ignore_merges, fuse_unk=False)
    )
    backend.pre_tokenizer = split.pre_tokenizer()
    backend.decoder = decoders.ByteLevel()
    return backend


def _sentencepiece_bpe(
    metadata: Mapping[str, Any], tokens: list[str], *, arch: str, add_prefix: bool
) -> Tokenizer:
    if arch in _GEMMA_ARCHS:
        tokens = _gemma_tokens(tokens)
        # Gemma's scores do not follow its merge order; the order of the tokens in the file does.
        ranks: Sequence[float] = [-i for i in range(len(tokens))]
    else:
        ranks = metadata.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
    vocab = {tok: i for i, tok in enumerate(tokens)}
    merges_raw: list[str] | None = metadata.get("tokenizer.ggml.merges")
    # Files converted from a SentencePiece model carry no merges: derive them.
    merges = _split_merges(merges_raw) if merges_raw else _merges_from_vocab(tokens, vocab, ranks)
    unk_id = metadata.get("tokenizer.ggml.unknown_token_id")
    unk = tokens[int(unk_id)] if unk_id is not None and 0 <= int(unk_id) < len(tokens) else None
    backend = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True)
    )
    steps: list[decoders.Decoder] = [
        decoders.Replace("▁", " "),
        decoders.ByteFallback(),
        decoders.Fuse(),
    ]
    if arch == "phi3":
        # Phi-3's own tokenizer.json prepends the space with a normalizer, i.e. to every piece
        # of text between special tokens, not only to the start of the input.
        backend.normalizer = normalizers.Sequence(
            [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
        )
        steps.append(decoders.Strip(content=" ", left=1))
    elif add_prefix:
        # SentencePiece writes a space before the text; the decoder takes it off again.
        backend.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement="▁", prepend_scheme="first", split=False
        )
        steps.append(decoders.Strip(content=" ", left=1))
    else:
        backend.normalizer = normalizers.Replace(" ", "▁")
    backend.decoder = decoders.Sequence(steps)
    return backend


def _split_merges(merges: Sequence[str]) -> list[tuple[str, str]]:
    """GGUF writes a merge as "left right"; a space inside a token is never literal there."""
    pairs = []
    for merge in merges:
        left, _, right = merge.partition(" ")
        pairs.append((left, right))
    return pairs


def _gemma_tokens(tokens: list[str]) -> list[str]:
    """Gemma files store the tokens made only of whitespace with real spaces ("  "), where the
    model's own vocabulary writes them with `▁`: respell them so merges and lookups find them."""
    return ["▁" * len(t) if " " in t and not t.strip() else t for t in tokens]


def _merges_from_vocab(
    tokens: list[str], vocab: Mapping[str, int], ranks: Sequence[float]
) -> list[tuple[str, str]]:
    """The BPE merges a SentencePiece vocabulary implies: every way to cut a token into two
    tokens that exist, best-ranked token first, then the longer left half first (the order
    transformers' converter produces, so ids match the reference)."""
    keyed: list[tuple[float, int, int, int, str, str]] = []
    extend = keyed.extend  # this loop visits ~1.5M cuts for Gemma's 262k tokens: keep it tight
    for order, (piece, index) in enumerate(vocab.items()):
        n = len(piece)
        if n < 2:
            continue
        rank = -ranks[index]
        extend(
            (rank, -cut, cut - n, order, piece[:cut], piece[cut:])
            for cut in range(1, n)
            if piece[:cut] in vocab and piece[cut:] in vocab
        )
    keyed.sort()
    return [(left, right) for *_, left, right in keyed]


# a user-defined token spelled as an angle-bracket marker, `<start_of_image>`, is a control
# token the GGUF converter labelled user-defined (Gemma 3's image markers are special in
# Google's own tokenizer): decoding must skip it like any control token. HTML tags (`<table>`,
# `</td>`: Gemma's user-defined text pieces) and `[multimodal]` (text there too) stay text.
_MARKER = re.compile(r"<[^<>\s]+>")
_HTML_TAG = re.compile(r"</?[a-z0-9]+>")


def _is_marker(token: str) -> bool:
    return bool(_MARKER.fullmatch(token)) and not _HTML_TAG.fullmatch(token)


def _add_special_tokens(
    backend: Tokenizer, tokens: list[str], token_types: Sequence[int], *, byte_level: bool
) -> frozenset[int]:
    """Register control tokens as special and user-defined tokens as whole-match added tokens.

    Without this `<|im_end|>` would be cut into `<`, `|`, `im`... In a byte-level vocabulary a
    control token spelled outside the byte alphabet is a converter mislabel and is left alone;
    a user-defined marker (see _MARKER) is a mislabelled control token and becomes special.
    """
    letters = set(byte_alphabet().values()) if byte_level else None
    vocab = backend.get_vocab(with_added_tokens=False)
    control: list[AddedToken] = []
    control_ids: set[int] = set()
    user: list[AddedToken] = []
    for i, (tok, kind) in enumerate(zip(tokens, token_types, strict=False)):
        control_like = kind == _CONTROL or (kind == _USER_DEFINED and _is_marker(tok))
        if control_like and (letters is None or set(tok) <= letters) and vocab.get(tok) == i:
            control.append(AddedToken(tok, normalized=False, special=True))
            control_ids.add(i)
        elif kind == _USER_DEFINED and vocab.get(tok) == i:
            user.append(AddedToken(tok, normalized=False, special=False))
    backend.add_special_tokens(control)
    backend.add_tokens(user)
    return frozenset(control_ids)
