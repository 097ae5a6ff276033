"""Stop strings over streamed text: text that could still turn into a stop string is held
back, so nothing is ever streamed and then retracted, and the output ends exactly before
the stop string even when it spans token boundaries.

Knows nothing of tokens, the model or the scheduler: it sees text deltas only."""

from __future__ import annotations


class StopStringBuffer:
    """Feed text deltas, get the part that is safe to emit.

    `feed(delta)` returns `(emit, matched)`: `emit` is new text for the caller to stream;
    `matched` is the stop string found (then the text is final and ends right before it),
    or None. `flush()` returns the held-back text when the sequence ends another way.
    """

    def __init__(self, stop: tuple[str, ...]) -> None:
        self.stop = tuple(s for s in stop if s)
        self._held = ""
        self._max_len = max((len(s) for s in self.stop), default=0)
        self.done = False

    def feed(self, delta: str) -> tuple[str, str | None]:
        if self.done:
            return "", None
        if not self.stop:
            return delta, None
        # every stop string occurrence starts in the held-back text or the delta: emitted
        # text never ends with a proper prefix of a stop string
        text = self._held + delta
        first: tuple[int, str] | None = None
        for s in self.stop:
            at = text.find(s)
            if at >= 0 and (first is None or at < first[0]):
                first = (at, s)
        if first is not None:
            self.done = True
            self._held = ""
            return text[: first[0]], first[1]
        hold = self._held_suffix_len(text)
        self._held = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold], None

    def _held_suffix_len(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
        for n in range(min(len(text), self._max_len - 1), 0, -1):
            suffix = text[-n:]
            if any(s.startswith(suffix) for s in self.stop):
                return n
        return 0

    def flush(self) -> str:
        held, self._held = self._held, ""
        self.done = True
        return held
