"""A LanguageModel over hearth's own engine (`hearth.engine.llm.LLM`). Multiple-choice
scoring is one `generate` call per batch of requests with `prompt_logprobs=1,
max_tokens=1, temperature=0`: the engine returns, for every prompt token, its
log-probability and its rank (rank 1 = the greedy choice), so no sampling is involved.
All requests of a batch go in the same call, so the scheduler batches them and the
prefix cache computes a shared context (the few-shot examples, the choices' common
question) once.

Tokenization follows lm-eval (`encode_pair`). Knows nothing of tasks or storage, and
only the engine's public API (generate, SamplingParams, RequestOutput)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from hearth.engine.sampling_params import SamplingParams
from hearth.errors import HearthError
from hearth.eval.lm import GenerationRequest, cut_at_stops, encode_pair


class _Engine(Protocol):
    def generate(self, prompts: Any, sampling_params: Any = ...) -> Any: ...


class EngineLM:
    """LanguageModel on an engine `LLM`. `encode` turns text into the token ids the model
    expects (with BOS if the model wants one); `max_model_len` (if known) left-truncates
    over-long prompts as lm-eval does."""

    def __init__(
        self,
        llm: _Engine,
        encode: Callable[[str], list[int]],
        max_model_len: int | None = None,
        batch_size: int = 256,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.llm = llm
        self.encode = encode
        self.max_model_len = max_model_len
        self.batch_size = batch_size

    @classmethod
    def from_llm(cls, llm: Any, batch_size: int = 256) -> EngineLM:
        """Take the tokenizer and context length from the LLM object itself."""
        tokenizer = (
            llm.get_tokenizer()
            if hasattr(llm, "get_tokenizer")
            else getattr(llm, "tokenizer", None)
        )
        if tokenizer is None or not hasattr(tokenizer, "encode"):
            raise HearthError("the engine exposes no tokenizer with encode(); cannot score text")
        max_len = getattr(llm, "max_model_len", None)
        return cls(llm, tokenizer.encode, int(max_len) if max_len else None, batch_size)

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        params = SamplingParams(max_tokens=1, prompt_logprobs=1, temperature=0.0)
        out: list[tuple[float, bool]] = []
        for start in range(0, len(requests), self.batch_size):
            prompts: list[list[int]] = []
            num_cont: list[int] = []
            for context, continuation in requests[start : start + self.batch_size]:
                ctx_ids, cont_ids = encode_pair(self.encode, context, continuation)
                if not cont_ids:
                    raise HearthError(f"continuation {continuation!r} encodes to no tokens")
                ids = ctx_ids + cont_ids
                if self.max_model_len and len(ids) > self.max_model_len - 1:
                    ids = ids[-(self.max_model_len - 1) :]  # keep room for the one decode step
                prompts.append(ids)
                num_cont.append(len(cont_ids))
            results = self.llm.generate(prompts, params)
            for ids, n, result in zip(prompts, num_cont, results, strict=True):
                out.append(_sum_prompt_logprobs(ids, n, result.prompt_logprobs))
        return out

    def generate_until(self, requests: Sequence[GenerationRequest]) -> list[str]:
        # one call per distinct setting; requests of a task share them, so one call per task
        groups: dict[tuple[tuple[str, ...], int], list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault((req.until, req.max_tokens), []).append(i)
        by_index: dict[int, str] = {}
        for (until, max_tokens), indices in groups.items():
            params = SamplingParams(temperature=0.0, max_tokens=max_tokens, stop=until)
            prompts = [self.encode(requests[i].context) for i in indices]
            if self.max_model_len:
                keep = max(1, self.max_model_len - max_tokens)
                prompts = [p[-keep:] for p in prompts]
            results = self.llm.generate(prompts, params)
            for i, result in zip(indices, results, strict=True):
                by_index[i] = cut_at_stops(result.outputs[0].text, until)
        return [by_index[i] for i in range(len(requests))]


def _sum_prompt_logprobs(ids: list[int], num_cont: int, prompt_logprobs: Any) -> tuple[float, bool]:
    """(sum, all rank 1) over the last `num_cont` prompt positions."""
    if prompt_logprobs is None or len(prompt_logprobs) != len(ids):
        raise HearthError("the engine returned no prompt logprobs for a scoring request")
    total = 0.0
    greedy = True
    for pos in range(len(ids) - num_cont, len(ids)):
        entry = prompt_logprobs[pos]
        if not entry or ids[pos] not in entry:
            raise HearthError(f"the engine returned no logprob for prompt token {pos}")
        lp = entry[ids[pos]]
        total += float(lp.logprob)
        if lp.rank != 1:
            greedy = False
    return total, greedy
