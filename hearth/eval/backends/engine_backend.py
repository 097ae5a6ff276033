"""A LanguageModel over hearth's own engine (`hearth.engine.llm.LLM`). Multiple-choice
scoring is one `generate` call per batch of requests with `prompt_logprobs=0,
max_tokens=1, temperature=0` and `prompt_logprobs_start` at the continuation: the engine
returns, for each continuation token, its log-probability and its rank (rank 1 = the
greedy choice), so no sampling is involved; only the continuation's positions go through
the LM head, and the context may come from the prefix cache.

Prefix sharing is the engine's: a request whose prompt opens with blocks another
request's prefill is computing waits until they are cached (the scheduler's in-flight
prefix wait), so the same context with another choice (ARC, HellaSwag) computes just its
continuation, the other option of a Winogrande item reuses the few-shot text and the
sentence up to it, and an MMLU subject's items reuse its 5-shot prefix. Requests go in
their task's order. A call holds at most `max_batch_tokens` of distinct context, so the
blocks its requests share stay cached (not evicted) until the last of them is admitted.

One-token continuations of one context (MMLU's " A" / " B" / " C" / " D") go as one
request of the context alone, asking for the candidates' logprobs at its next position
(`SamplingParams.logprob_token_ids`): the same numbers from the same logits row, where four
requests each recomputed the context's last, partly filled KV block and their answer.

Tokenization follows lm-eval (`encode_pair`). Knows nothing of tasks or storage, and
only the engine's public API (generate, SamplingParams, RequestOutput)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hearth.engine.sampling_params import SamplingParams
from hearth.errors import HearthError
from hearth.eval.lm import GenerationRequest, cut_at_stops, encode_pair

# distinct context tokens per generate call when the engine's KV pool size is unknown
DEFAULT_BATCH_TOKENS = 32768


@dataclass(frozen=True)
class _Query:
    """One engine request of a scoring call: `ids` is the prompt sent; its last `num_cont`
    tokens are scored through prompt logprobs (for request `members[0]`), or, with
    `candidates`, the tokens after it are (candidates[j] for request members[j])."""

    ids: list[int]
    num_cont: int
    members: tuple[int, ...]
    candidates: tuple[int, ...] = ()

    def params(self) -> SamplingParams:
        if self.candidates:
            return SamplingParams(
                max_tokens=1, temperature=0.0, logprobs=0, logprob_token_ids=self.candidates
            )
        return SamplingParams(
            max_tokens=1,
            temperature=0.0,
            prompt_logprobs=0,
            prompt_logprobs_start=len(self.ids) - self.num_cont,
        )


def _queries(prompts: list[tuple[list[int], int]]) -> list[_Query]:
    """The requests for these prompts, in their order: one per prompt, except that the
    one-token continuations of one context share one candidate request."""
    siblings: dict[tuple[int, ...], list[int]] = {}
    for i, (ids, n) in enumerate(prompts):
        if n == 1:
            siblings.setdefault(tuple(ids[:-1]), []).append(i)
    queries: list[_Query] = []
    for i, (ids, n) in enumerate(prompts):
        group = siblings.get(tuple(ids[:-1]), []) if n == 1 else []
        if len(group) < 2:
            queries.append(_Query(ids, n, (i,)))
        elif group[0] == i:
            candidates = tuple(prompts[m][0][-1] for m in group)
            queries.append(_Query(ids[:-1], 0, tuple(group), candidates))
    return queries


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
        max_batch_tokens: int = DEFAULT_BATCH_TOKENS,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
        self.llm = llm
        self.encode = encode
        self.max_model_len = max_model_len
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens

    @classmethod
    def from_llm(cls, llm: Any, batch_size: int = 256) -> EngineLM:
        """Take the tokenizer, the context length and the KV pool size from the LLM."""
        tokenizer = (
            llm.get_tokenizer()
            if hasattr(llm, "get_tokenizer")
            else getattr(llm, "tokenizer", None)
        )
        if tokenizer is None or not hasattr(tokenizer, "encode"):
            raise HearthError("the engine exposes no tokenizer with encode(); cannot score text")
        max_len = getattr(llm, "max_model_len", None)
        budget = DEFAULT_BATCH_TOKENS
        engine = getattr(llm, "engine", None)
        if engine is not None and hasattr(engine, "metrics"):
            # half the pool: the contexts of one call stay cached until their second wave
            pool_tokens = engine.metrics().num_blocks_total * engine.config.block_size
            budget = max(1, pool_tokens // 2)
        return cls(llm, tokenizer.encode, int(max_len) if max_len else None, batch_size, budget)

    def _prompt(self, context: str, continuation: str) -> tuple[list[int], int]:
        """(prompt ids, number of continuation tokens at its end)."""
        ctx_ids, cont_ids = encode_pair(self.encode, context, continuation)
        if not cont_ids:
            raise HearthError(f"continuation {continuation!r} encodes to no tokens")
        ids = ctx_ids + cont_ids
        if self.max_model_len and len(ids) > self.max_model_len - 1:
            ids = ids[-(self.max_model_len - 1) :]  # keep room for the one decode step
        # the first token has no logprob: a continuation filling the window loses it
        return ids, min(len(cont_ids), len(ids) - 1)

    def _calls(self, prompts: list[tuple[list[int], int]]) -> list[list[int]]:
        """Request indices per generate call, in order, bounded by batch_size requests and
        max_batch_tokens of distinct context. A prompt (ids, n) has context ids[:-n] (all
        of ids when n is 0)."""
        calls: list[list[int]] = []
        call: list[int] = []
        seen: set[tuple[int, ...]] = set()
        tokens = 0
        for i, (ids, n) in enumerate(prompts):
            context = tuple(ids[: len(ids) - n])
            new = context not in seen
            if call and (
                len(call) >= self.batch_size
                or (new and tokens + len(context) > self.max_batch_tokens)
            ):
                calls.append(call)
                call, seen, tokens = [], set(), 0
                new = True
            if new:
                seen.add(context)
                tokens += len(context)
            call.append(i)
        if call:
            calls.append(call)
        return calls

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        prompts = [self._prompt(context, continuation) for context, continuation in requests]
        queries = _queries(prompts)
        out: list[tuple[float, bool]] = [(0.0, False)] * len(prompts)
        for order in self._calls([(q.ids, q.num_cont) for q in queries]):
            results = self.llm.generate(
                [queries[i].ids for i in order], [queries[i].params() for i in order]
            )
            for i, result in zip(order, results, strict=True):
                q = queries[i]
                if q.candidates:
                    for member, value in zip(q.members, _candidate_logprobs(q, result), strict=True):
                        out[member] = value
                else:
                    out[q.members[0]] = _sum_prompt_logprobs(
                        q.ids, q.num_cont, result.prompt_logprobs
                    )
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


def _candidate_logprobs(query: _Query, result: Any) -> list[tuple[float, bool]]:
    """(logprob, is the greedy choice) of each candidate after the query's prompt."""
    logprobs = result.outputs[0].logprobs if result.outputs else None
    if not logprobs or not logprobs[0]:
        raise HearthError("the engine returned no logprobs for a candidate-scoring request")
    entry = logprobs[0]
    missing = [t for t in query.candidates if t not in entry]
    if missing:
        raise HearthError(f"the engine returned no logprob for candidate token {missing[0]}")
    return [(float(entry[t].logprob), entry[t].rank == 1) for t in query.candidates]


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
