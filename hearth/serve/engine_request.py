"""A generation request in engine terms, whatever wire format it arrived in, and what it
used: the two records that pass between a route's preparation, the one generation handler
(handler.py) and a wire format's renderer. A new per-request setting (an adapter, ...) is a
field of `EngineRequest`; a new count (draft tokens, ...) is a field of `Usage`. Knows
nothing of HTTP or tensors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hearth.engine.sampling_params import SamplingParams


@dataclass(frozen=True)
class EngineRequest:
    """What the engine is asked for: `prompts` (token ids; /v1/completions may send
    several, each run with the same `params`, `params.n` completions each; the other
    endpoints send one), the SamplingParams (output constraints included, as
    `params.structured`), whether to stream, the tool-call format to parse calls out of
    the output (None: no tools) and the response headers the request's tool plan adds.
    `discard_output`: only the prompt is wanted (OpenAI completions' `echo` with
    `max_tokens: 0`); the engine still makes one token, which is neither returned nor
    counted."""

    prompts: tuple[tuple[int, ...], ...]
    params: SamplingParams
    stream: bool = False
    tool_format: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    discard_output: bool = False

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ValueError("EngineRequest.prompts: give at least one prompt")


@dataclass(frozen=True)
class Usage:
    """What one request used, over all its prompts and completions: the token counts (the
    usage ledger's, OpenAI's `usage`, Ollama's counts) and times in seconds (Ollama's
    durations): `total_s` from arrival to the end, `load_s` loading the model for it,
    `prompt_eval_s` from admission to the first token, `eval_s` from the first token to
    the end."""

    prompt_tokens: int
    completion_tokens: int
    ttft_s: float | None = None
    total_s: float = 0.0
    load_s: float = 0.0
    prompt_eval_s: float = 0.0
    eval_s: float = 0.0
    # speculative decoding: tokens drafted, and those the model accepted
    draft_n: int = 0
    draft_n_accepted: int = 0

    def openai(self) -> dict[str, Any]:
        """OpenAI's `usage` object; with speculation, its predicted-output counters say
        what was drafted."""
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if self.draft_n:
            usage["completion_tokens_details"] = {
                "accepted_prediction_tokens": self.draft_n_accepted,
                "rejected_prediction_tokens": self.draft_n - self.draft_n_accepted,
            }
        return usage

    def ollama(self) -> dict[str, Any]:
        """Ollama's counts and durations (nanoseconds) of a final object."""
        return {
            "total_duration": int(self.total_s * 1e9),
            "load_duration": int(self.load_s * 1e9),
            "prompt_eval_count": self.prompt_tokens,
            "prompt_eval_duration": int(self.prompt_eval_s * 1e9),
            "eval_count": self.completion_tokens,
            "eval_duration": int(self.eval_s * 1e9),
            # llama.cpp's names for the speculation counters, when there were drafts
            **(
                {"draft_n": self.draft_n, "draft_n_accepted": self.draft_n_accepted}
                if self.draft_n
                else {}
            ),
        }
