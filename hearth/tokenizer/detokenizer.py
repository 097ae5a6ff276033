"""Turn a stream of generated ids into a stream of text deltas, safely.

Decoding one id at a time goes wrong in two ways: a character split over several byte tokens
(emoji, CJK under byte fallback or byte-level BPE) decodes to U+FFFD until its last byte
arrives, and SentencePiece decoders drop the leading space of a decoded sequence, so
`decode([id])` of "▁Paris" is "Paris" while in context it is " Paris". The detokenizer keeps a
small window of already-emitted ids as context (like vLLM and HF's TextStreamer): it decodes
`window + new ids`, emits only the text past the window's own decoding, and holds the delta
back while it ends in U+FFFD (an unfinished character).

Knows nothing of models or requests: only a Tokenizer and ids.
"""

from __future__ import annotations

from collections.abc import Sequence

from hearth.tokenizer.tokenizer import Tokenizer

__all__ = ["IncrementalDetokenizer"]

_REPLACEMENT = "\ufffd"
# Ids of context kept before the first new id; enough for any decoder's look-behind.
_CONTEXT_IDS = 5


class IncrementalDetokenizer:
    """Feed generated ids one at a time with `add`; each call returns the new text (possibly "").

    `prompt_ids` gives the ids before the generation, so the first generated token is decoded
    in context (its leading space kept). The deltas of all `add` calls plus `finish()` equal
    `tokenizer.decode(generated_ids)` when no prompt is given.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        prompt_ids: Sequence[int] = (),
        skip_special_tokens: bool = True,
    ) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = list(prompt_ids)
        # ids[prefix:read] is the decoded context; ids[read:] are not emitted yet
        self._read = len(self.ids)
        self._prefix = max(self._read - _CONTEXT_IDS, 0)
        self.text = ""  # everything emitted so far

    def add(self, token_id: int) -> str:
        """Append one generated id; return the text it completes ("" while a character is
        still incomplete)."""
        self.ids.append(token_id)
        return self._emit(final=False)

    def finish(self) -> str:
        """Return whatever was held back (text genuinely ending in U+FFFD, or a character that
        never completed). Call once, after the last id."""
        return self._emit(final=True)

    def _emit(self, final: bool) -> str:
        if self._read == len(self.ids):
            return ""
        decode = self.tokenizer.decode
        context = decode(self.ids[self._prefix : self._read], self.skip_special_tokens)
        full = decode(self.ids[self._prefix :], self.skip_special_tokens)
        if not final and full.endswith(_REPLACEMENT):
            return ""  # the last token ends mid-character: wait for the rest of its bytes
        if full.startswith(context):
            delta = full[len(context) :]
        else:
            # The decoder changed its mind about the context (rare normalizations); emit the
            # part that differs from what was already shown, never re-emitting the context.
            common = 0
            for a, b in zip(context, full, strict=False):
                if a != b:
                    break
                common += 1
            delta = full[common:]
        # Keep a short window of emitted ids as context for the next decode.
        self._prefix = max(self._read, len(self.ids) - _CONTEXT_IDS) if delta else self._prefix
        self._read = len(self.ids)
        self.text += delta
        return delta
