"""The interface the tasks score through, shaped like lm-evaluation-harness's `LM`:
log-likelihoods of continuations and greedy generation until stop strings. Also the
tokenization rule every backend shares (how lm-eval splits context from continuation).

Knows nothing of tasks, datasets, HTTP or the engine; backends implement the Protocol."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# lm-eval's HF backend generates at most this many tokens when a task does not say
DEFAULT_MAX_GEN_TOKENS = 256


@dataclass(frozen=True)
class GenerationRequest:
    """Greedy generation from `context` until one of `until` appears or `max_tokens`."""

    context: str
    until: tuple[str, ...] = ()
    max_tokens: int = DEFAULT_MAX_GEN_TOKENS

    def __post_init__(self) -> None:
        object.__setattr__(self, "until", tuple(self.until))
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if any(not s for s in self.until):
            raise ValueError("until: stop strings must be non-empty")


@runtime_checkable
class LanguageModel(Protocol):
    """What a task needs from a model. Results come back in request order."""

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        """For each (context, continuation): the summed log-probability of the
        continuation's tokens given the context, and whether greedy decoding would have
        produced exactly those tokens."""
        ...

    def generate_until(self, requests: Sequence[GenerationRequest]) -> list[str]:
        """For each request: the greedy continuation, cut before the first stop string."""
        ...


def move_trailing_space(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval moves whitespace at the end of the context to the front of the continuation,
    so a word boundary is tokenized as part of the scored text (" Paris", not " " + "Paris")."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        return context[:-n_spaces], context[-n_spaces:] + continuation
    return context, continuation


def encode_pair(
    encode: Callable[[str], list[int]], context: str, continuation: str
) -> tuple[list[int], list[int]]:
    """Token ids of (context, continuation) exactly as lm-eval's causal backends make them:
    after moving trailing spaces, encode context+continuation as one string and cut it at
    the length of the encoded context. `encode` adds whatever special tokens (BOS) the
    model expects at the start of a text. The context must not be empty."""
    if not context:
        raise ValueError("context must not be empty")
    context, continuation = move_trailing_space(context, continuation)
    whole = encode(context + continuation)
    context_ids = encode(context)
    return context_ids, whole[len(context_ids) :]


def cut_at_stops(text: str, until: Sequence[str]) -> str:
    """The text before the earliest stop string (lm-eval splits on each stop in turn,
    which gives the same result)."""
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text
