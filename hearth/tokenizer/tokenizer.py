"""The Tokenizer every other layer uses: text <-> ids, the special and stop tokens, the chat
template, and the vocabulary as bytes for grammar engines.

It wraps a `tokenizers.Tokenizer` (the Rust backend, exposed as `.backend`) however it was
built — from tokenizer.json or rebuilt from GGUF metadata (loading.py). Knows nothing of files,
tensors or requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from tokenizers import Tokenizer as Backend

from hearth.errors import UserInputError
from hearth.tokenizer.chat_template import ChatTemplate, Message

__all__ = ["END_OF_TURN_TOKENS", "Tokenizer", "VocabType"]

VocabType = Literal["byte_level", "byte_fallback", "raw"]

# Tokens that end a turn in the chat formats of the supported families. A model that has one
# of these as a special token stops on it even when its file names another eos id (SmolLM2's
# eos is <|im_end|> but its base-model documents end in <|endoftext|>; Gemma's eos is <eos>
# but its turns end in <end_of_turn>; Llama 3's eos is <|end_of_text|>, turns end <|eot_id|>).
END_OF_TURN_TOKENS = (
    "<|im_end|>",
    "<end_of_turn>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
    "<|return|>",
    "<|call|>",
)


class Tokenizer:
    """Text <-> ids for one model.

    `eos_ids` is every id that ends generation: the file's eos (and eot/eom) ids, the
    generation config's, and the end-of-turn tokens above that the vocabulary has as special
    tokens.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        vocab_type: VocabType,
        bos_id: int | None = None,
        eos_id: int | None = None,
        stop_ids: Iterable[int] = (),
        pad_id: int | None = None,
        unk_id: int | None = None,
        chat_template: str | None = None,
    ) -> None:
        if vocab_type not in ("byte_level", "byte_fallback", "raw"):
            raise ValueError(
                f"vocab_type must be byte_level, byte_fallback or raw, not {vocab_type!r}"
            )
        self.backend = backend
        self.vocab_type: VocabType = vocab_type
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.pad_id = pad_id
        self.unk_id = unk_id
        self.chat_template = chat_template or None
        self._template: ChatTemplate | None = None
        added = backend.get_added_tokens_decoder()
        self.special_ids: frozenset[int] = frozenset(i for i, tok in added.items() if tok.special)
        stops = {i for i in (eos_id, *stop_ids) if i is not None}
        for text in END_OF_TURN_TOKENS:
            i = backend.token_to_id(text)
            if i is not None and i in self.special_ids:
                stops.add(i)
        self.eos_ids: frozenset[int] = frozenset(stops)

    # ---- text <-> ids ------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer knows, added tokens included (the model's embedding
        table may be larger, padded)."""
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Ids for `text`. Special tokens written in the text (e.g. "<|im_end|>") become their
        ids; `add_special_tokens` adds what the model wants around a sequence (e.g. BOS)."""
        return list(self.backend.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return str(self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def id_to_token(self, token_id: int) -> str | None:
        """The token as the vocabulary spells it (e.g. "Ġthe", "▁the", "<0x0A>"), or None."""
        tok = self.backend.id_to_token(token_id)
        return None if tok is None else str(tok)

    def token_to_id(self, token: str) -> int | None:
        i = self.backend.token_to_id(token)
        return None if i is None else int(i)

    # ---- vocabulary for grammar engines -------------------------------------------------

    def encoded_vocab(self) -> list[str]:
        """Every id's token as the vocabulary spells it, indexed by id ("" for an id with no
        token). With `vocab_type` this is what xgrammar's TokenizerInfo takes."""
        return [self.backend.id_to_token(i) or "" for i in range(self.vocab_size)]

    @property
    def has_chat_template(self) -> bool:
        return self.chat_template is not None

    def apply_chat_template(
        self,
        messages: Sequence[Message],
        add_generation_prompt: bool = True,
        tools: Sequence[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> str:
        """The prompt text for a conversation, rendered by the model's own template.

        Raises UserInputError when the model has no chat template (a base model: use plain
        completion) or when the template rejects the conversation."""
        if self.chat_template is None:
            raise UserInputError(
                "this model has no chat template (it is a base / completion model), so it cannot "
                "take chat messages; use plain completion instead: `hearth run MODEL --raw` or "
                "the /v1/completions endpoint"
            )
        if self._template is None:
            self._template = ChatTemplate(self.chat_template)
        variables: dict[str, Any] = {
            "bos_token": self._token_text(self.bos_id),
            "eos_token": self._token_text(self.eos_id),
            "pad_token": self._token_text(self.pad_id),
            "unk_token": self._token_text(self.unk_id),
        }
        variables.update(kwargs)
        return self._template.render(
            messages, add_generation_prompt=add_generation_prompt, tools=tools, **variables
        )

    def encode_chat(
        self,
        messages: Sequence[Message],
        add_generation_prompt: bool = True,
        tools: Sequence[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> list[int]:
        """Ids of the rendered chat prompt. The template writes its own BOS where the model
        wants one, so none is added here."""
        text = self.apply_chat_template(messages, add_generation_prompt, tools, **kwargs)
        return self.encode(text, add_special_tokens=False)

    def _token_text(self, token_id: int | None) -> str:
        if token_id is None:
            return ""
        return self.backend.id_to_token(token_id) or ""

    def __repr__(self) -> str:
        return (
            f"Tokenizer(vocab_size={self.vocab_size}, vocab_type={self.vocab_type!r}, "
            f"bos_id={self.bos_id}, eos_ids={sorted(self.eos_ids)}, "
            f"chat_template={'yes' if self.has_chat_template else 'no'})"
        )
