"""LLMEngine: requests in, outputs out, one `step()` at a time (vLLM's LLMEngine). Owns
the scheduler, the block manager, the model runner and the sampler, and applies the
stopping rules (EOS, stop token ids, stop strings, max_tokens, context end, grammar end).
Not thread-safe: AsyncEngine serialises calls. Knows nothing of HTTP or the CLI."""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

import torch

from hearth.engine.block_manager import BlockManager
from hearth.engine.engine_config import EngineConfig
from hearth.engine.metrics import EngineMetrics, ThroughputMeter
from hearth.engine.model_runner import DecoderLike, ModelRunner
from hearth.engine.output_processor import RequestState
from hearth.engine.outputs import RequestOutput
from hearth.engine.sampler import Sampler, SamplerRow, prompt_logprobs
from hearth.engine.sampling_params import SamplingParams
from hearth.engine.scheduler import Scheduler, SchedulerConfig
from hearth.engine.sequence import Sequence
from hearth.errors import ContextLengthError, UserInputError


class LLMEngine:
    """Drive with `add_request` / `step` / `abort`. Every `step()` returns the requests
    that changed (new tokens, new text, or finished); `RequestOutput.outputs[i].delta_*`
    hold what is new."""

    def __init__(
        self,
        model: DecoderLike,
        kv_caches: Any,
        tokenizer: Any,
        config: EngineConfig,
        *,
        num_blocks: int,
        max_model_len: int,
        vocab_size: int,
        eos_token_ids: Iterable[int] = (),
    ) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.vocab_size = vocab_size
        self.eos_token_ids = frozenset(eos_token_ids)
        self.block_manager = BlockManager(
            num_blocks, config.block_size, config.enable_prefix_caching
        )
        self.scheduler = Scheduler(
            SchedulerConfig(config.max_num_batched_tokens, config.max_num_seqs),
            self.block_manager,
        )
        self.runner = ModelRunner(model, kv_caches, config.block_size)
        self.sampler = Sampler(config.seed)
        self.requests: dict[str, RequestState] = {}
        self._compiling: list[Sequence] = []
        self._compiler: ThreadPoolExecutor | None = None
        self._meter = ThroughputMeter()
        self._prompt_tokens_total = 0
        self._generation_tokens_total = 0
        self.last_failed: list[str] = []  # request ids the last failed step took down

    # -- requests -------------------------------------------------------------------
    def tokenize(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            ids = list(self.tokenizer.encode(prompt))
        else:
            ids = [int(t) for t in prompt]
        if not ids:
            raise UserInputError("the prompt is empty; give at least one token of text")
        bad = [t for t in ids if not 0 <= t < self.vocab_size]
        if bad:
            raise UserInputError(
                f"prompt token id {bad[0]} is outside the vocabulary (0..{self.vocab_size - 1})"
            )
        return ids

    def add_request(self, request_id: str, prompt: str | list[int], params: SamplingParams) -> None:
        if request_id in self.requests:
            raise UserInputError(f"request id {request_id!r} is already in use")
        ids = self.tokenize(prompt)
        if len(ids) >= self.max_model_len:
            raise ContextLengthError(
                len(ids),
                self.max_model_len,
                f"the prompt is {len(ids)} tokens but the context is {self.max_model_len} "
                "tokens (and must leave room for at least one new token); shorten the prompt "
                "or raise the context (--ctx / max_model_len) if the model and KV budget allow",
            )
        outside = [t for t in params.logprob_token_ids if t >= self.vocab_size]
        if outside:
            raise UserInputError(
                f"logprob_token_ids: token id {outside[0]} is outside the vocabulary "
                f"(0..{self.vocab_size - 1})"
            )
        start = params.prompt_logprobs_start
        if start is not None and start >= len(ids):
            raise UserInputError(
                f"prompt_logprobs_start {start} is past the prompt's last token "
                f"(the prompt has {len(ids)} tokens); use a position below {len(ids)}"
            )
        seqs: list[Sequence] = []
        for i in range(params.n):
            gen = None
            if params.seed is not None:
                gen = torch.Generator().manual_seed(params.seed + i)
            seq = Sequence(
                request_id, ids, params, index=i, block_size=self.config.block_size, generator=gen
            )
            # siblings wait for the first one's prompt, then share its full blocks
            if i and self.config.enable_prefix_caching and params.prompt_logprobs is None:
                seq.wait_for = seqs[0]
            if params.prompt_logprobs is not None:
                # positions before the start come back None and are never computed for
                # logits; the model runner starts at len(prompt_logprobs) - 1
                seq.prompt_logprobs = [None] * (params.prompt_logprobs_start or 1)
            seqs.append(seq)
        if params.structured is not None:
            self._start_compile(seqs, params)
        self.requests[request_id] = RequestState(
            request_id, prompt if isinstance(prompt, str) else None, ids, seqs, self.tokenizer
        )
        for seq in seqs:
            self.scheduler.add(seq)

    def _start_compile(self, seqs: list[Sequence], params: SamplingParams) -> None:
        """Grammar compilation runs in a background thread: the sequence waits, the
        others keep decoding."""
        from hearth.engine.structured import compile_matcher

        spec = params.structured
        assert spec is not None
        if self._compiler is None:
            self._compiler = ThreadPoolExecutor(1, thread_name_prefix="hearth-grammar")
        for seq in seqs:
            seq.matcher_future = self._compiler.submit(compile_matcher, self.tokenizer, spec)
            self._compiling.append(seq)

    def _collect_compiled(self) -> list[RequestOutput]:
        failed: list[RequestOutput] = []
        for seq in list(self._compiling):
            if not seq.matcher_future.done():
                continue
            self._compiling.remove(seq)
            future, seq.matcher_future = seq.matcher_future, None
            if seq.is_finished:
                continue
            exc = future.exception()
            if exc is None:
                seq.matcher = future.result()
                continue
            state = self.requests.get(seq.request_id)
            if state is not None:
                state.error = exc
                self._finish_request(state, "error")
                out = self._output(state)
                if out is not None:
                    failed.append(out)
        return failed

    def abort(self, request_id: str) -> None:
        """Stop a request now and release its blocks; unknown / finished ids are ignored."""
        state = self.requests.get(request_id)
        if state is None:
            return
        self._finish_request(state, "abort")
        del self.requests[request_id]

    def _finish_request(self, state: RequestState, reason: str) -> None:
        for seq in state.seqs:
            if not seq.is_finished:
                self.scheduler.finish(seq, reason)
            if seq in self._compiling:
                self._compiling.remove(seq)

    def has_unfinished_requests(self) -> bool:
        return bool(self.requests)

    # -- the step -------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        outputs = self._collect_compiled()
        batch = self.scheduler.schedule()
        if not batch:
            if self._compiling and not outputs:
                # only grammars are pending: wait for one instead of spinning
                wait([s.matcher_future for s in self._compiling], 0.05, FIRST_COMPLETED)
            self._drop_finished(outputs)
            return outputs
        start = time.perf_counter()
        try:
            run = self.runner.run(batch)
        except BaseException as exc:
            # the step's K/V are half written: fail these requests and release their
            # blocks, so nothing leaks, then let the caller see the error
            self.last_failed = []
            for seq in batch.seqs:
                state = self.requests.pop(seq.request_id, None)
                if state is not None:
                    state.error = exc
                    self._finish_request(state, "error")
                    self.last_failed.append(state.request_id)
            raise
        num_prefill = num_decode = 0
        for seq, n in zip(batch.seqs, batch.num_tokens, strict=True):
            if n == 1 and seq.num_computed_tokens >= seq.num_prompt_tokens:
                num_decode += 1
            else:
                num_prefill += n
        self.scheduler.postprocess(batch)
        for seq_id, (positions, logits) in run.prompt_logits.items():
            seq = next(s for s in batch.seqs if s.seq_id == seq_id)
            assert positions[0] == len(seq.prompt_logprobs) - 1
            k = seq.params.prompt_logprobs
            assert k is not None
            nxt = [seq.token_ids[p + 1] for p in positions]
            seq.prompt_logprobs.extend(prompt_logprobs(logits, nxt, k))
        touched = self._sample(run.sample_seqs, run.logits)
        self._meter.record(start, time.perf_counter(), num_prefill, num_decode)
        self._prompt_tokens_total += num_prefill
        self._generation_tokens_total += len(run.sample_seqs)
        for request_id in touched:
            state = self.requests[request_id]
            out = self._output(state)
            if out is not None:
                outputs.append(out)
        self._drop_finished(outputs)
        return outputs

    def _sample(self, seqs: list[Sequence], logits: torch.Tensor) -> list[str]:
        if not seqs:
            return []
        for i, seq in enumerate(seqs):
            if seq.matcher is not None:
                seq.matcher.fill_mask(logits[i])
        rows = [
            SamplerRow(s.params, s.prompt_token_ids, s.output_token_ids, s.generator) for s in seqs
        ]
        result = self.sampler(logits, rows)
        touched: dict[str, None] = {}
        for i, seq in enumerate(seqs):
            tok = result.token_ids[i]
            entry, sampled_logprob = result.logprobs[i], result.sampled_logprobs[i]
            if seq.matcher is not None:
                forced = seq.matcher.fit_budget(tok, self._num_left(seq))
                if forced != tok:
                    # the sampled token would leave no room to complete the output: take
                    # the closing path's next token instead (as if the mask allowed only it)
                    seq.closed_by_budget = True
                    row = torch.full_like(logits[i : i + 1], float("-inf"))
                    row[0, forced] = 0.0
                    again = self.sampler(row, rows[i : i + 1])
                    tok, entry = forced, again.logprobs[0]
                    sampled_logprob = again.sampled_logprobs[0]
            seq.append_token(tok)
            if entry is not None:
                seq.logprobs.append(entry)
                seq.cumulative_logprob += sampled_logprob
            if seq.matcher is not None:
                seq.matcher.accept(tok)
            self._check_stop(seq, tok)
            touched[seq.request_id] = None
        return list(touched)

    def _num_left(self, seq: Sequence) -> int:
        """Tokens `seq` may still produce, the one being sampled included."""
        left = self.max_model_len - len(seq)
        if seq.params.max_tokens is not None:
            left = min(left, seq.params.max_tokens - seq.num_output_tokens)
        return left

    def _eos_like(self, seq: Sequence) -> frozenset[int]:
        ids = frozenset(seq.params.stop_token_ids)
        return ids if seq.params.ignore_eos else ids | self.eos_token_ids

    def _check_stop(self, seq: Sequence, tok: int) -> None:
        params = seq.params
        state = self.requests[seq.request_id]
        st = state.text_state(seq)
        matched = state.absorb(st, self._eos_like(seq))
        reason: str | None = None
        if matched is not None:
            reason, seq.stop_reason = "stop", matched
        elif tok in params.stop_token_ids:
            reason, seq.stop_reason = "stop", tok
        elif (tok in self.eos_token_ids and not params.ignore_eos) or (
            seq.matcher is not None and seq.matcher.is_finished()
        ):
            # complete, but closed early because the budget ran out: say so
            reason = "length" if seq.closed_by_budget else "stop"
        elif (params.max_tokens is not None and seq.num_output_tokens >= params.max_tokens) or len(
            seq
        ) >= self.max_model_len:
            reason = "length"
        if reason is None:
            return
        if matched is None:
            state.flush(st)
        self.scheduler.finish(seq, reason)

    def _output(self, state: RequestState) -> RequestOutput | None:
        return state.make_output(self._decode_one)

    def _decode_one(self, token_id: int) -> str:
        return str(self.tokenizer.decode([token_id]))

    def _drop_finished(self, outputs: list[RequestOutput]) -> None:
        for out in outputs:
            if out.finished:
                self.requests.pop(out.request_id, None)

    # -- counters -------------------------------------------------------------------
    def metrics(self) -> EngineMetrics:
        bm = self.block_manager
        prefill, decode = self._meter.rates()
        grammar: dict[str, float] = {}
        if self._compiler is not None:  # a constrained request came: the compiler exists
            from hearth.engine.structured import compiler_for

            grammar = compiler_for(self.tokenizer).stats.snapshot()
        return EngineMetrics(
            num_running=len(self.scheduler.running),
            num_waiting=len(self.scheduler.waiting),
            num_preemptions=self.scheduler.num_preemptions,
            num_blocks_total=bm.num_blocks,
            num_blocks_used=bm.num_used_blocks,
            num_blocks_free=bm.num_free_blocks,
            num_blocks_cached=bm.num_cached_blocks,
            prefix_cache_hit_tokens=bm.num_prefix_hit_tokens,
            prompt_tokens_total=self._prompt_tokens_total,
            generation_tokens_total=self._generation_tokens_total,
            prefill_tokens_per_s=prefill,
            decode_tokens_per_s=decode,
            constrained_requests=int(grammar.get("constrained_requests", 0)),
            grammar_compile_seconds=grammar.get("compile_seconds", 0.0),
            grammar_mask_steps=int(grammar.get("mask_steps", 0)),
            grammar_mask_seconds=grammar.get("mask_seconds", 0.0),
        )

    def shutdown(self) -> None:
        if self._compiler is not None:
            self._compiler.shutdown(wait=False, cancel_futures=True)
            self._compiler = None
