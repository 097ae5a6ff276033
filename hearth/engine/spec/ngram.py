"""Prompt lookup / n-gram drafting (llama.cpp's `lookup`, vLLM's ngram proposer, the
"prompt lookup decoding" of transformers): find the latest earlier place where the last n
tokens of prompt + output occurred, and propose the tokens that followed there. It pays
when the output quotes its input (rewrites, edits, summaries with quotes, code edits) and
costs nothing when there is no match (no proposal).

One `NgramIndex` per sequence maps every n-gram (min_n <= n <= max_n) to the position
right after its latest occurrence, grown as tokens are appended: a proposal is a few dict
lookups whatever the context length. Knows nothing of the model, tensors or scheduling."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_MIN_N = 2  # a single-token match proposes too often on chat text to be worth it
DEFAULT_MAX_N = 4


@dataclass
class NgramIndex:
    """Positions of n-grams in one growing token list."""

    min_n: int = DEFAULT_MIN_N
    max_n: int = DEFAULT_MAX_N
    # (n-gram tokens) -> index right after its latest occurrence
    _after: dict[tuple[int, ...], int] = field(default_factory=dict)
    _indexed: int = 0  # n-grams ending before this index are in _after

    def __post_init__(self) -> None:
        if not 1 <= self.min_n <= self.max_n:
            raise ValueError(f"need 1 <= min_n <= max_n, got {self.min_n}, {self.max_n}")

    def _index_until(self, tokens: list[int], end: int) -> None:
        """Index every n-gram that ends before `end` (exclusive)."""
        for stop in range(self._indexed + 1, end + 1):  # n-gram tokens[stop - n : stop]
            for n in range(self.min_n, min(self.max_n, stop) + 1):
                self._after[tuple(tokens[stop - n : stop])] = stop
        self._indexed = max(self._indexed, end)

    def propose(self, tokens: list[int], k: int) -> list[int]:
        """Up to k tokens that followed the longest suffix of `tokens` (n <= max_n) seen
        earlier in `tokens`; [] when none was. `tokens` must only have grown since the last
        call (a sequence's prompt + output)."""
        if k < 1 or len(tokens) <= self.min_n:
            return []
        # the suffix itself must not match: index everything that ends before the last token
        self._index_until(tokens, len(tokens) - 1)
        at = self.lookup(tokens)
        return [] if at is None else tokens[at : at + k]

    def lookup(self, suffix: list[int]) -> int | None:
        """Where the tokens after the longest indexed n-gram ending `suffix` start."""
        for n in range(min(self.max_n, len(suffix)), self.min_n - 1, -1):
            at = self._after.get(tuple(suffix[-n:]))
            if at is not None:
                return at
        return None


class SharedNgrams:
    """N-grams of the outputs of finished requests of one engine (a suffix cache across
    requests: a server asked similar things answers with similar text). Proposals only
    change speed, never output: verification decides. Bounded: forgets all past
    `max_tokens` and starts over."""

    SEPARATOR = -1  # between two outputs: never a token, so a match never spans them

    def __init__(self, min_n: int = 3, max_n: int = DEFAULT_MAX_N, max_tokens: int = 1 << 20):
        self.min_n, self.max_n, self.max_tokens = min_n, max_n, max_tokens
        self.history: list[int] = []
        self.index = NgramIndex(min_n, max_n)

    def add(self, tokens: list[int]) -> None:
        if len(self.history) + len(tokens) + 1 > self.max_tokens:
            self.history, self.index = [], NgramIndex(self.min_n, self.max_n)
        self.history.extend(tokens)
        self.history.append(self.SEPARATOR)
        self.index._index_until(self.history, len(self.history) - 1)

    def propose(self, tokens: list[int], k: int) -> list[int]:
        at = self.index.lookup(tokens[-self.max_n :]) if k > 0 else None
        if at is None:
            return []
        drafts = self.history[at : at + k]
        if self.SEPARATOR in drafts:
            drafts = drafts[: drafts.index(self.SEPARATOR)]
        return drafts
