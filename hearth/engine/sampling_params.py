"""SamplingParams: how one request is decoded (vLLM vocabulary). Checked when built: a value
out of range raises InvalidParameterError naming the parameter. Knows nothing of models,
tokenizers or the scheduler."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hearth.errors import InvalidParameterError

if TYPE_CHECKING:
    from hearth.engine.structured import StructuredSpec


# Upper bounds. Every count a request gives ends up in a tensor or a loop: an unbounded one
# overflows int64 inside a step (top_k 2**63) or makes one request's step cost scale with
# it (a logit_bias over the whole vocabulary). vLLM's max_logprobs default is 20; OpenAI
# allows 300 logit_bias entries (the API keeps to that; the engine allows more).
MAX_INT = 2**31 - 1  # top_k, max_tokens: anything above the vocabulary / context is "all"
MAX_N = 128
MAX_LOGPROBS = 20
MAX_LOGIT_BIAS = 1024
MAX_TOKEN_LIST = 1024  # stop_token_ids, logprob_token_ids
MAX_STOP = 64
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed takes


def _bad(param: str, message: str) -> InvalidParameterError:
    return InvalidParameterError(param, f"{param}: {message}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class SamplingParams:
    """One request's decoding settings.

    temperature 0 means greedy. top_k 0 (or -1), top_p 1 and typical_p 1 disable those
    filters (typical_p: locally typical sampling, transformers' TypicalLogitsWarper).
    `repeat_last_n` is the window of repetition_penalty, in tokens of prompt + output:
    -1 (the default, vLLM's and HF's meaning) all of them, 0 none (the penalty is off),
    N the last N (Ollama's and llama.cpp's meaning; Ollama's default is 64). presence and
    frequency penalties count the output only, as OpenAI defines them.
    max_tokens None means "until the context is full". `stop` strings end the text exactly
    before the string (the string itself is not returned). `logprobs=k` returns the sampled
    token's logprob plus the k most likely alternatives for every output token;
    `logprob_token_ids` adds these tokens' logprobs (with their ranks) to each of those
    entries (several candidate next tokens of one prompt scored by one request: an eval's
    one-token answers " A"/" B"/" C"/" D"; needs `logprobs`);
    `prompt_logprobs=k` does the same for every prompt token (None for the first);
    `prompt_logprobs_start=s` limits it to prompt tokens s.. (earlier ones come back None),
    so only those positions go through the LM head and the prompt before s - 1 may come
    from the prefix cache (scoring a continuation after a shared few-shot context).
    With `seed`, the same request gives the same text whatever else is in the batch; with
    n > 1 the i-th completion uses seed + i. `lora`: the name of a LoRA adapter loaded on
    the engine (None: the base model alone).
    """

    n: int = 1
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    typical_p: float = 1.0
    repetition_penalty: float = 1.0
    repeat_last_n: int = -1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Mapping[int, float] | None = None
    seed: int | None = None
    max_tokens: int | None = 16
    ignore_eos: bool = False
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    logprobs: int | None = None
    logprob_token_ids: tuple[int, ...] = ()
    prompt_logprobs: int | None = None
    prompt_logprobs_start: int | None = None
    skip_special_tokens: bool = True
    speculate: bool = True  # False: never draft for this request (the engine's mode aside)
    structured: StructuredSpec | None = field(default=None)
    lora: str | None = None

    def __post_init__(self) -> None:
        # accept a lone string / any iterable for the tuple fields, like vLLM does
        stop: Any = self.stop
        if stop is None:
            stop = ()
        elif isinstance(stop, str):
            stop = (stop,)
        object.__setattr__(self, "stop", tuple(stop))
        ids: Any = self.stop_token_ids
        object.__setattr__(self, "stop_token_ids", tuple(int(i) for i in (ids or ())))
        wanted: Any = self.logprob_token_ids
        object.__setattr__(self, "logprob_token_ids", tuple(int(i) for i in (wanted or ())))
        if self.logit_bias is not None:
            object.__setattr__(
                self, "logit_bias", {int(k): float(v) for k, v in dict(self.logit_bias).items()}
            )
        self._validate()

    def _validate(self) -> None:
        """Every numeric field's type and range: any surface (LLM, CLI, server) gets the
        same InvalidParameterError naming the field; nothing out of range reaches a step."""
        self._validate_numbers()
        self._validate_lists()

    def _validate_numbers(self) -> None:
        if not _is_int(self.n) or not 1 <= self.n <= MAX_N:
            raise _bad("n", f"must be an integer in [1, {MAX_N}], got {self.n!r}")
        if not _finite(self.temperature) or self.temperature < 0:
            raise _bad("temperature", f"must be >= 0 (0 is greedy), got {self.temperature}")
        if not _is_int(self.top_k) or not -1 <= self.top_k <= MAX_INT:
            raise _bad(
                "top_k",
                f"must be an integer in [-1, {MAX_INT}] (0 or -1 disables it), got {self.top_k!r}",
            )
        if not _finite(self.top_p) or not 0 < self.top_p <= 1:
            raise _bad("top_p", f"must be in (0, 1], got {self.top_p}")
        if not _finite(self.min_p) or not 0 <= self.min_p <= 1:
            raise _bad("min_p", f"must be in [0, 1], got {self.min_p}")
        if not _finite(self.typical_p) or not 0 < self.typical_p <= 1:
            raise _bad("typical_p", f"must be in (0, 1] (1 disables it), got {self.typical_p}")
        if not _is_int(self.repeat_last_n) or not -1 <= self.repeat_last_n <= MAX_INT:
            raise _bad(
                "repeat_last_n",
                f"must be an integer in [-1, {MAX_INT}] (-1: the whole context, 0: no "
                f"repetition penalty), got {self.repeat_last_n!r}",
            )
        if not _finite(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise _bad(
                "repetition_penalty", f"must be > 0 (1 disables it), got {self.repetition_penalty}"
            )
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if not _finite(value) or not -2 <= value <= 2:
                raise _bad(name, f"must be in [-2, 2], got {value}")
        if self.max_tokens is not None and (
            not _is_int(self.max_tokens) or not 1 <= self.max_tokens <= MAX_INT
        ):
            raise _bad(
                "max_tokens", f"must be an integer in [1, {MAX_INT}], got {self.max_tokens!r}"
            )
        if self.seed is not None and (
            not _is_int(self.seed) or not SEED_RANGE[0] <= self.seed <= SEED_RANGE[1]
        ):
            raise _bad(
                "seed",
                f"must be an integer in [{SEED_RANGE[0]}, {SEED_RANGE[1]}], got {self.seed!r}",
            )
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or not 0 <= value <= MAX_LOGPROBS):
                raise _bad(
                    name, f"must be None or an integer in [0, {MAX_LOGPROBS}], got {value!r}"
                )
        if self.prompt_logprobs_start is not None:
            if self.prompt_logprobs is None:
                raise _bad("prompt_logprobs_start", "needs prompt_logprobs to be set")
            if not _is_int(self.prompt_logprobs_start) or self.prompt_logprobs_start < 1:
                raise _bad(
                    "prompt_logprobs_start",
                    f"must be an integer >= 1 (a prompt position), got "
                    f"{self.prompt_logprobs_start!r}",
                )

    def _validate_lists(self) -> None:
        for name in ("stop_token_ids", "logprob_token_ids"):
            ids = getattr(self, name)
            if len(ids) > MAX_TOKEN_LIST:
                raise _bad(name, f"at most {MAX_TOKEN_LIST} token ids, got {len(ids)}")
            if any(not 0 <= i <= MAX_INT for i in ids):
                raise _bad(name, f"token ids must be in [0, {MAX_INT}]")
        if self.lora is not None and (not isinstance(self.lora, str) or not self.lora):
            raise _bad("lora", f"must be an adapter's name, got {self.lora!r}")
        if self.logprob_token_ids and self.logprobs is None:
            raise _bad("logprob_token_ids", "needs logprobs to be set (logprobs=0 will do)")
        if len(self.stop) > MAX_STOP:
            raise _bad("stop", f"at most {MAX_STOP} stop strings, got {len(self.stop)}")
        for s in self.stop:
            if not isinstance(s, str) or not s:
                raise _bad("stop", f"stop strings must be non-empty strings, got {s!r}")
        if self.logit_bias is not None:
            if len(self.logit_bias) > MAX_LOGIT_BIAS:
                raise _bad(
                    "logit_bias", f"at most {MAX_LOGIT_BIAS} tokens, got {len(self.logit_bias)}"
                )
            for token, bias in self.logit_bias.items():
                if not 0 <= token <= MAX_INT:
                    raise _bad("logit_bias", f"token id must be in [0, {MAX_INT}], got {token}")
                if not -100 <= bias <= 100:
                    raise _bad("logit_bias", f"bias must be in [-100, 100], got {bias}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def uses_top_k(self) -> bool:
        return self.top_k > 0

    @property
    def uses_repetition_penalty(self) -> bool:
        return self.repetition_penalty != 1.0 and self.repeat_last_n != 0

    @property
    def uses_penalties(self) -> bool:
        return (
            self.uses_repetition_penalty
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
        )
