"""What the engine returns for a request (vLLM vocabulary): a RequestOutput with one
CompletionOutput per sequence (n of them). Plain data; knows nothing of the engine."""

from __future__ import annotations

from dataclasses import dataclass, field

from hearth.engine.sequence import Logprob

__all__ = ["CompletionOutput", "Logprob", "RequestOutput"]


@dataclass
class CompletionOutput:
    """One completion. `text` / `token_ids` are everything so far; `delta_text` /
    `delta_token_ids` what is new since the previous output for this request (for
    streaming). `finish_reason` is None while running, then "stop" (EOS, a stop token or
    a stop string: `stop_reason` says which) or "length", or "abort".
    `structure_incomplete` is True only for a finished, constrained completion whose output
    does not complete its grammar (its budget was too small to close it: the text is not
    valid JSON); a constrained output closed early to fit ends "length" but complete.
    `draft_n` / `draft_n_accepted`: tokens speculated for it so far, and those verified."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    logprobs: list[dict[int, Logprob]] | None = None
    cumulative_logprob: float | None = None
    delta_text: str = ""
    delta_token_ids: list[int] = field(default_factory=list)
    structure_incomplete: bool = False
    # speculative decoding (llama.cpp's timings names): tokens drafted, and accepted
    draft_n: int = 0
    draft_n_accepted: int = 0

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass
class RequestOutput:
    """A request's state after a step. `prompt_logprobs[0]` is None (nothing predicts the
    first token); `num_cached_tokens` prompt tokens came from the prefix cache."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool = False
    prompt_logprobs: list[dict[int, Logprob] | None] | None = None
    num_cached_tokens: int = 0
    error: BaseException | None = None
