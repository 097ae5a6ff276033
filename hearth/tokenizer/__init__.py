"""Text <-> ids from tokenizer.json or GGUF vocabularies, incremental detokenization, and chat templates. Knows nothing of tensors or requests."""

from hearth.tokenizer.chat_template import ChatTemplate
from hearth.tokenizer.detokenizer import IncrementalDetokenizer
from hearth.tokenizer.loading import load_tokenizer, tokenizer_from_gguf_metadata
from hearth.tokenizer.tokenizer import END_OF_TURN_TOKENS, Tokenizer, VocabType

__all__ = [
    "END_OF_TURN_TOKENS",
    "ChatTemplate",
    "IncrementalDetokenizer",
    "Tokenizer",
    "VocabType",
    "load_tokenizer",
    "tokenizer_from_gguf_metadata",
]
