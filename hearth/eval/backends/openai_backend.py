"""A LanguageModel over any OpenAI-compatible server's `/v1/completions` (another hearth,
vLLM, llama-server, ...). Log-likelihoods come from `echo=True, logprobs=1` on the text
context+continuation: the server returns every prompt token with its log-probability,
its most likely alternative and its character offset, and the continuation is the tokens
that start at or after the end of the context. Generation is greedy with the stop
strings sent along (and applied again here, as lm-eval does).

`max_tokens=0` is asked first (no wasted decode step); servers that insist on at least
one token get `max_tokens=1` from then on and the generated token is ignored.

Knows nothing of tasks or storage; talks HTTP only (httpx)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from hearth.errors import HearthError, UserInputError
from hearth.eval.lm import GenerationRequest, cut_at_stops, move_trailing_space


@dataclass(frozen=True)
class OpenAIConfig:
    base_url: str
    model: str
    api_key: str = ""
    batch_size: int = 16  # prompts per HTTP request
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if not self.model:
            raise ValueError("model must name the server's model")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def completions_url(base_url: str) -> str:
    """`…/v1/completions` for a base URL given with or without the `/v1` part."""
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/completions"


class OpenAICompletionsLM:
    """LanguageModel through `/v1/completions`."""

    def __init__(self, config: OpenAIConfig, client: httpx.Client | None = None) -> None:
        self.config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._client = client or httpx.Client(timeout=config.timeout_s, headers=headers)
        self._url = completions_url(config.base_url)
        self._scoring_max_tokens = 0  # becomes 1 for servers that reject 0

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAICompletionsLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, payload: dict[str, Any]) -> httpx.Response:
        try:
            return self._client.post(self._url, json=payload)
        except httpx.HTTPError as exc:
            raise UserInputError(
                f"cannot reach {self._url}: {exc}; check --base-url and that the server runs"
            ) from exc

    def _choices(self, resp: httpx.Response) -> list[dict[str, Any]]:
        if resp.status_code >= 400:
            raise HearthError(
                f"{self._url} answered {resp.status_code}: {resp.text[:500]}; the server must "
                "support /v1/completions (with echo and logprobs for multiple-choice tasks)"
            )
        try:
            choices = resp.json()["choices"]
            return sorted(choices, key=lambda c: c.get("index", 0))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise HearthError(f"{self._url} answered without 'choices': {resp.text[:500]}") from exc

    def _score_batch(self, prompts: list[str]) -> list[dict[str, Any]]:
        payload: dict[str, Any] = {
            "model": self.config.model,
            "prompt": prompts,
            "max_tokens": self._scoring_max_tokens,
            "temperature": 0,
            "echo": True,
            "logprobs": 1,
        }
        resp = self._post(payload)
        if resp.status_code in (400, 422) and self._scoring_max_tokens == 0:
            # "max_tokens must be at least 1": ask for one token and ignore it from now on
            self._scoring_max_tokens = payload["max_tokens"] = 1
            resp = self._post(payload)
        return self._choices(resp)

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        pairs = [move_trailing_space(c, x) for c, x in requests]
        out: list[tuple[float, bool]] = []
        size = self.config.batch_size
        for start in range(0, len(pairs), size):
            chunk = pairs[start : start + size]
            choices = self._score_batch([c + x for c, x in chunk])
            if len(choices) != len(chunk):
                raise HearthError(
                    f"{self._url} returned {len(choices)} choices for {len(chunk)} prompts"
                )
            for (context, continuation), choice in zip(chunk, choices, strict=True):
                out.append(continuation_logprob(choice, len(context), len(context + continuation)))
        return out

    def generate_until(self, requests: Sequence[GenerationRequest]) -> list[str]:
        out = []
        for req in requests:
            payload: dict[str, Any] = {
                "model": self.config.model,
                "prompt": req.context,
                "max_tokens": req.max_tokens,
                "temperature": 0,
            }
            if req.until:
                payload["stop"] = list(req.until)[:4]  # OpenAI's API takes at most 4
            choices = self._choices(self._post(payload))
            if not choices:
                raise HearthError(f"{self._url} returned no completion")
            choice = choices[0]
            out.append(cut_at_stops(str(choice.get("text", "")), req.until))
        return out


def continuation_logprob(
    choice: dict[str, Any], context_chars: int, prompt_chars: int
) -> tuple[float, bool]:
    """(sum of log-probabilities, all greedy) of the prompt tokens that lie in
    [context_chars, prompt_chars) by their `text_offset`. A token that straddles the
    boundary counts as continuation (it carries continuation text)."""
    try:
        lp = choice["logprobs"]
        tokens_lp: list[float | None] = lp["token_logprobs"]
        offsets: list[int] = lp["text_offset"]
        tops: list[dict[str, float] | None] = lp["top_logprobs"]
    except (KeyError, TypeError) as exc:
        raise HearthError(
            "the server's completion has no echo logprobs (token_logprobs, text_offset, "
            "top_logprobs); it must support echo=True with logprobs"
        ) from exc
    first = None
    for i, off in enumerate(offsets):
        if off >= context_chars:
            first = i
            break
    if first is None or offsets[first] >= prompt_chars:
        raise HearthError("the server's echoed tokens do not cover the continuation")
    if first > 0 and offsets[first] > context_chars:
        first -= 1  # the previous token runs across the boundary
    if first == 0:
        raise HearthError("the continuation starts at the first token; nothing conditions it")
    total = 0.0
    greedy = True
    for i in range(first, len(offsets)):
        if offsets[i] >= prompt_chars:
            break  # generated by max_tokens=1, not part of the prompt
        value = tokens_lp[i]
        if value is None:
            raise HearthError(f"the server returned no logprob for prompt token {i}")
        total += float(value)
        top = tops[i] or {}
        if top and value < max(top.values()):
            greedy = False
    return total, greedy
