"""A test drafter that knows a sequence's non-speculative continuation and proposes it with
every third draft wrong, so verification accepts, rejects and rolls back on purpose (a tiny
random model does not quote its prompt, so n-gram lookup would rarely propose)."""

from __future__ import annotations


class KnownContinuation:
    """Proposes the known continuation of one sequence, corrupting every third draft."""

    def __init__(self, expected: list[int]) -> None:
        self.expected = expected
        self.calls = 0

    def propose(self, tokens: list[int], k: int) -> list[int]:
        self.calls += 1
        if tokens != self.expected[: len(tokens)]:
            return []
        drafts = self.expected[len(tokens) : len(tokens) + k]
        if self.calls % 3 == 0 and len(drafts) > 2:
            drafts[2] = (drafts[2] + 1) % 100
        return drafts
