"""LLMEngine: requests in, outputs out, one `step()` at a time (vLLM's LLMEngine). Owns
the scheduler, the block manager, the model runner and the sampler, and applies the
stopping rules (EOS, stop token ids, stop strings, max_tokens, context end, grammar end).
With speculation on (EngineConfig.speculative), a Speculator drafts tokens for decoding
sequences before each step and verify_drafts accepts them after it (engine/spec/).
Not thread-safe: AsyncEngine serialises calls. Knows nothing of HTTP or the CLI."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch

from hearth.engine.block_manager import BlockManager
from hearth.engine.embeddings import MEAN_NORMALIZED
from hearth.engine.engine_config import EngineConfig
from hearth.engine.lora_adapters import Adapter, LoraAdapters
from hearth.engine.metrics import EngineMetrics, ThroughputMeter
from hearth.engine.model_runner import DecoderLike, ModelRunner, RunnerOutput
from hearth.engine.output_processor import RequestState
from hearth.engine.outputs import RequestOutput
from hearth.engine.sampler import Sampler, SamplerRow, prompt_logprobs
from hearth.engine.sampling_params import SamplingParams
from hearth.engine.scheduler import Scheduler, SchedulerConfig, SchedulerOutput
from hearth.engine.sequence import Logprob, Sequence
from hearth.engine.spec.ngram import NgramIndex
from hearth.engine.spec.speculator import Drafter, Speculator
from hearth.engine.spec.verify import verify_drafts
from hearth.errors import ContextLengthError, NotFoundError, UserInputError

# prefix-cache tokens an idle engine keeps when it gives memory back: a paused chat's
# conversation so far (a whole 8k context of SmolLM2 would be 370 MB kept resident)
IDLE_KEEP_CACHED_TOKENS = 2048


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
        new_drafter: Callable[[Sequence], Drafter] | None = None,
    ) -> None:
        """new_drafter: each sequence's drafter for speculation; None = prompt lookup
        (n-gram). "self" and "draft" need theirs (engine/spec/model_drafter.py)."""
        self.config = config
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.vocab_size = vocab_size
        self.eos_token_ids = frozenset(eos_token_ids)
        # how `embed` pools this model's hidden states (an embedding model's folder says)
        self.embedding_pooling = MEAN_NORMALIZED
        # an embedding model's default prompt (sentence-transformers' default_prompt_name),
        # put before each text it embeds
        self.embedding_prompt = ""
        self.block_manager = BlockManager(
            num_blocks, config.block_size, config.enable_prefix_caching
        )
        self.scheduler = Scheduler(
            SchedulerConfig(
                config.max_num_batched_tokens, config.max_num_seqs, config.num_lora_slots
            ),
            self.block_manager,
        )
        self.runner = ModelRunner(model, kv_caches, config.block_size)
        self.sampler = Sampler(config.seed)
        self.speculator: Speculator | None = None
        if config.speculative != "off":
            if new_drafter is None and config.speculative in ("self", "draft"):
                raise ValueError(f"speculative {config.speculative!r} needs its new_drafter")
            self.speculator = Speculator(
                config.speculative, config.num_speculative_tokens, new_drafter or _ngram
            )
        self._draft_tokens_total = 0
        self._accepted_tokens_total = 0
        self.requests: dict[str, RequestState] = {}
        self._compiling: list[Sequence] = []
        self._compiler: ThreadPoolExecutor | None = None
        self._meter = ThroughputMeter()
        self._prompt_tokens_total = 0
        self._generation_tokens_total = 0
        self.last_failed: list[str] = []  # request ids the last failed step took down
        # LoRA adapters (lora_adapters.py), made at the first add_lora; base_name and
        # base_digest are the model's store facts, which an adapter naming its base must match
        self.adapters: LoraAdapters | None = None
        self.base_name: str | None = None
        self.base_digest: str | None = None

    # -- LoRA adapters ---------------------------------------------------------------
    def add_lora(self, name: str, path: str | Path) -> Adapter:
        """Register the LoRA adapter at `path` (a PEFT folder or a GGUF LoRA file) as `name`
        (hot: between steps). Raises UserInputError when it does not fit this model."""
        if self.adapters is None:
            adapters = LoraAdapters(
                self.runner.model, self.config.num_lora_slots, self.config.max_lora_rank,
                self.base_name, self.base_digest,
            )  # fmt: skip
            adapter = adapters.add(name, path)
            self.adapters = self.runner.adapters = adapters
            return adapter
        return self.adapters.add(name, path)

    def remove_lora(self, name: str) -> None:
        """Unregister `name`: new requests for it are refused now; it goes when the
        requests already using it finish. Raises NotFoundError for an unknown name."""
        if self.adapters is None:
            raise NotFoundError(f"no LoRA adapter named {name!r} is loaded; none is loaded")
        self.adapters.remove(name, in_use=name in self._loras_in_use())

    def list_loras(self) -> list[Adapter]:
        adapters = self.adapters
        return [] if adapters is None else [adapters.adapters[n] for n in adapters.names()]

    def _loras_in_use(self) -> set[str]:
        return {s.lora for st in self.requests.values() for s in st.seqs if s.lora is not None}

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
        adapter = None
        if params.lora is not None:
            if self.adapters is None:
                raise NotFoundError(
                    f"no LoRA adapter named {params.lora!r} is loaded; none is loaded "
                    "(serve --lora NAME=PATH, or LLM.load_lora)"
                )
            adapter = self.adapters.get(params.lora)
        seqs: list[Sequence] = []
        for i in range(params.n):
            gen = None
            if params.seed is not None:
                seed = params.seed + i  # params keep seed below 2**64: wrap the sum
                gen = torch.Generator().manual_seed(seed - 2**64 if seed >= 2**64 else seed)
            seq = Sequence(
                request_id, ids, params, index=i, block_size=self.config.block_size, generator=gen
            )
            if params.prompt_logprobs is not None:
                # positions before the start come back None and are never computed for
                # logits; the model runner starts at len(prompt_logprobs) - 1
                seq.prompt_logprobs = [None] * (params.prompt_logprobs_start or 1)
            if adapter is not None:
                seq.lora, seq.prefix_key = adapter.name, adapter.key
            seqs.append(seq)
        if adapter is not None and self.adapters is not None:
            counts = self.adapters.requests_total
            counts[adapter.name] = counts.get(adapter.name, 0) + 1
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
        if self.adapters is not None and self.adapters.removing:
            self.adapters.collect(self._loras_in_use())

    def _finish_request(self, state: RequestState, reason: str) -> None:
        for seq in state.seqs:
            if not seq.is_finished:
                self.scheduler.finish(seq, reason)
            if seq in self._compiling:
                self._compiling.remove(seq)

    def has_unfinished_requests(self) -> bool:
        return bool(self.requests)

    # -- the step -------------------------------------------------------------------
    # One request must never fail the others batched with it: whatever goes wrong for one
    # sequence inside a step (the forward, its prompt logprobs, its grammar mask, sampling
    # it, its stop checks) finishes that sequence's request with the error and the step
    # goes on for the rest. Only a BaseException (KeyboardInterrupt, ...) escapes; then
    # every request of the batch is failed first, so no blocks leak.
    def step(self) -> list[RequestOutput]:
        outputs = self._collect_compiled()
        if self.speculator is not None:
            self.speculator.propose(
                self.scheduler.running,
                lambda s: self._num_left(s) - 1,
                self.config.max_num_batched_tokens,
            )
        batch = self.scheduler.schedule()
        if not batch:
            if self._compiling and not outputs:
                # only grammars are pending: wait for one instead of spinning
                wait([s.matcher_future for s in self._compiling], 0.05, FIRST_COMPLETED)
            self._drop_finished(outputs)
            return outputs
        self.last_failed = []
        try:
            outputs.extend(self._step_batch(batch))
        except BaseException as exc:
            self._fail_all(batch.seqs, exc)
            raise
        finally:
            for seq in self.scheduler.running:
                seq.draft_token_ids.clear()
        self._drop_finished(outputs)
        return outputs

    def _step_batch(self, batch: SchedulerOutput) -> list[RequestOutput]:
        start = time.perf_counter()
        failed: dict[str, None] = {}
        batch, run = self._run_isolated(batch, failed)
        num_prefill = num_decode = 0
        for seq, n in zip(batch.seqs, batch.num_tokens, strict=True):
            n -= len(seq.draft_token_ids)
            if n == 1 and seq.num_computed_tokens >= seq.num_prompt_tokens:
                num_decode += 1
            else:
                num_prefill += n
        self.scheduler.postprocess(batch)
        for seq_id, (positions, logits) in run.prompt_logits.items():
            seq = next(s for s in batch.seqs if s.seq_id == seq_id)
            try:
                self._add_prompt_logprobs(seq, positions, logits)
            except Exception as exc:
                self._fail(seq, exc, failed)
        touched = self._sample(run.sample_seqs, run.logits, failed)
        num_accepted = 0
        if run.draft_logits:
            more, accepted = verify_drafts(
                run.sample_seqs,
                run.draft_logits,
                lambda seqs, logits: self._sample(seqs, logits, failed),
                self.block_manager,
            )
            touched.extend(more)
            num_accepted = self._count_drafts(run.sample_seqs, accepted)
        end = time.perf_counter()
        if self.speculator is not None:
            self.speculator.observe_step(batch.total_tokens, end - start)
        self._meter.record(start, end, num_prefill, num_decode + num_accepted)
        self._prompt_tokens_total += num_prefill
        self._generation_tokens_total += len(run.sample_seqs) + num_accepted
        outputs = []
        for request_id in {**dict.fromkeys(touched), **failed}:
            out = self._output(self.requests[request_id])
            if out is not None:
                outputs.append(out)
        return outputs

    def _count_drafts(self, seqs: list[Sequence], accepted: dict[int, int]) -> int:
        """Book the verified drafts (per sequence, engine-wide, the speculator's alphas);
        returns the accepted ones."""
        for seq in seqs:
            if seq.seq_id not in accepted:
                continue
            num_drafted, num_accepted = len(seq.draft_token_ids), accepted[seq.seq_id]
            seq.num_draft_tokens += num_drafted
            seq.num_accepted_draft_tokens += num_accepted
            self._draft_tokens_total += num_drafted
            self._accepted_tokens_total += num_accepted
            if self.speculator is not None:
                self.speculator.observe_verified(seq, num_drafted, num_accepted)
        return sum(accepted.values())

    def _run_isolated(
        self, batch: SchedulerOutput, failed: dict[str, None]
    ) -> tuple[SchedulerOutput, RunnerOutput]:
        """The batch's forward; if it fails, each sequence alone (rewriting a sequence's
        new K/V at the same slots is harmless), failing only those that fail alone."""
        try:
            return batch, self.runner.run(batch)
        except Exception as exc:
            if len(batch.seqs) == 1:
                self._fail(batch.seqs[0], exc, failed)
                return SchedulerOutput(), _empty_run(self.vocab_size)
        kept = SchedulerOutput()
        runs: list[RunnerOutput] = []
        for seq, n in zip(batch.seqs, batch.num_tokens, strict=True):
            if seq.is_finished:  # a sibling of a request that failed here
                continue
            try:
                runs.append(self.runner.run(SchedulerOutput([seq], [n])))
            except Exception as exc:
                self._fail(seq, exc, failed)
                continue
            kept.seqs.append(seq)
            kept.num_tokens.append(n)
        # a sibling may have failed after its own run went through
        keep = [i for i, s in enumerate(kept.seqs) if not s.is_finished]
        kept = SchedulerOutput([kept.seqs[i] for i in keep], [kept.num_tokens[i] for i in keep])
        runs = [r for r in runs if all(not s.is_finished for s in r.sample_seqs)]
        live = {s.seq_id for s in kept.seqs}
        merged = _empty_run(self.vocab_size)
        sampled = [r for r in runs if r.sample_seqs]  # a mid-prefill run has no logits rows
        if runs:
            merged = RunnerOutput(
                [s for r in sampled for s in r.sample_seqs],
                torch.cat([r.logits for r in sampled])
                if sampled
                else torch.empty(0, self.vocab_size),
                {k: v for r in runs for k, v in r.prompt_logits.items() if k in live},
                {k: v for r in runs for k, v in r.draft_logits.items() if k in live},
            )
        return kept, merged

    def _add_prompt_logprobs(
        self, seq: Sequence, positions: list[int], logits: torch.Tensor
    ) -> None:
        assert positions[0] == len(seq.prompt_logprobs) - 1
        k = seq.params.prompt_logprobs
        assert k is not None
        nxt = [seq.token_ids[p + 1] for p in positions]
        seq.prompt_logprobs.extend(prompt_logprobs(logits, nxt, k))

    def _fail(self, seq: Sequence, exc: BaseException, failed: dict[str, None]) -> None:
        """Finish seq's request (all its sequences) with `exc`; the step goes on."""
        state = self.requests.get(seq.request_id)
        if state is None or state.error is not None:
            return
        state.error = exc
        self._finish_request(state, "error")
        failed[seq.request_id] = None

    def _fail_all(self, seqs: list[Sequence], exc: BaseException) -> None:
        """The step itself broke: fail every request of its batch and release their blocks,
        so nothing leaks; `last_failed` tells the caller whom to tell."""
        for seq in seqs:
            state = self.requests.pop(seq.request_id, None)
            if state is not None:
                state.error = exc
                self._finish_request(state, "error")
                self.last_failed.append(state.request_id)

    def _sample(
        self, seqs: list[Sequence], logits: torch.Tensor, failed: dict[str, None]
    ) -> list[str]:
        for i, seq in enumerate(seqs):
            if seq.matcher is not None and not seq.is_finished:
                try:
                    seq.matcher.fill_mask(logits[i])
                except Exception as exc:
                    self._fail(seq, exc, failed)
        live = [i for i, s in enumerate(seqs) if not s.is_finished]
        if not live:
            return []
        if len(live) < len(seqs):
            seqs, logits = [seqs[i] for i in live], logits[live]
        tokens = self._sample_rows(seqs, logits, failed)
        touched: dict[str, None] = {}
        for i, (seq, sampled) in enumerate(zip(seqs, tokens, strict=True)):
            if sampled is None or seq.is_finished:
                continue
            try:
                self._accept(seq, logits[i : i + 1], *sampled)
            except Exception as exc:
                self._fail(seq, exc, failed)
                continue
            touched[seq.request_id] = None
        return list(touched)

    def _sample_rows(
        self, seqs: list[Sequence], logits: torch.Tensor, failed: dict[str, None]
    ) -> list[tuple[int, dict[int, Logprob] | None, float] | None]:
        """(token, logprobs entry, sampled logprob) per sequence; None where sampling that
        row failed (its request is failed). The batch is sampled at once; if that raises,
        row by row, with the seeded rows' generators rewound so their draws stay theirs."""
        rows = [self._row(s) for s in seqs]
        rewind = [(r.generator, r.generator.get_state()) for r in rows if r.generator is not None]
        try:
            result = self.sampler(logits, rows)
            return list(
                zip(result.token_ids, result.logprobs, result.sampled_logprobs, strict=True)
            )
        except Exception:
            for generator, state in rewind:
                generator.set_state(state)
        out: list[tuple[int, dict[int, Logprob] | None, float] | None] = []
        for i, (seq, row) in enumerate(zip(seqs, rows, strict=True)):
            try:
                one = self.sampler(logits[i : i + 1], [row])
            except Exception as exc:
                self._fail(seq, exc, failed)
                out.append(None)
                continue
            out.append((one.token_ids[0], one.logprobs[0], one.sampled_logprobs[0]))
        return out

    def _accept(
        self,
        seq: Sequence,
        logits: torch.Tensor,
        tok: int,
        entry: dict[int, Logprob] | None,
        lp: float,
    ) -> None:
        """Append the sampled token `tok` (logits: seq's (1, V) row) and check the stops."""
        if seq.matcher is not None:
            forced = seq.matcher.fit_budget(tok, self._num_left(seq))
            if forced != tok:
                # the sampled token would leave no room to complete the output: take
                # the closing path's next token instead (as if the mask allowed only it)
                seq.closed_by_budget = True
                row = torch.full_like(logits, float("-inf"))
                row[0, forced] = 0.0
                again = self.sampler(row, [self._row(seq)])
                tok, entry, lp = forced, again.logprobs[0], again.sampled_logprobs[0]
        seq.append_token(tok)
        if entry is not None:
            seq.logprobs.append(entry)
            seq.cumulative_logprob += lp
        if seq.matcher is not None:
            seq.matcher.accept(tok)
        self._check_stop(seq, tok)

    @staticmethod
    def _row(seq: Sequence) -> SamplerRow:
        return SamplerRow(seq.params, seq.prompt_token_ids, seq.output_token_ids, seq.generator)

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
        if self.adapters is not None and self.adapters.removing:
            self.adapters.collect(self._loras_in_use())

    # -- memory ---------------------------------------------------------------------
    @property
    def kv_cache_bytes(self) -> int:
        """The KV pool's size (all layers, keys and values)."""
        return sum(
            t.numel() * t.element_size()
            for layer in self.runner.kv_caches
            for t in (getattr(layer, "key", None), getattr(layer, "value", None))
            if isinstance(t, torch.Tensor)
        )

    def release_idle_memory(self) -> int:
        """Give the pages of free KV blocks back to the OS (kv_memory.py), keeping the
        most recently used IDLE_KEEP_CACHED_TOKENS of the prefix cache (the conversation
        that paused). Call when idle. Returns the bytes released."""
        from hearth.engine.kv_memory import release_blocks

        bm = self.block_manager
        keep = min(self.max_model_len, IDLE_KEEP_CACHED_TOKENS)
        bm.trim_prefix_cache(-(-keep // bm.block_size))
        return release_blocks(self.runner.kv_caches, bm.uncached_free_blocks())

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
            kv_cache_bytes=self.kv_cache_bytes,
            kv_cache_tokens=bm.num_blocks * bm.block_size,
            prefix_cache_hit_tokens=bm.num_prefix_hit_tokens,
            prompt_tokens_total=self._prompt_tokens_total,
            generation_tokens_total=self._generation_tokens_total,
            prefill_tokens_per_s=prefill,
            decode_tokens_per_s=decode,
            constrained_requests=int(grammar.get("constrained_requests", 0)),
            grammar_compile_seconds=grammar.get("compile_seconds", 0.0),
            grammar_mask_steps=int(grammar.get("mask_steps", 0)),
            grammar_mask_seconds=grammar.get("mask_seconds", 0.0),
            spec_draft_tokens_total=self._draft_tokens_total,
            spec_accepted_tokens_total=self._accepted_tokens_total,
            lora_adapters_loaded=len(self.list_loras()),
            lora_requests_total=dict(self.adapters.requests_total) if self.adapters else {},
        )

    def shutdown(self) -> None:
        if self._compiler is not None:
            self._compiler.shutdown(wait=False, cancel_futures=True)
            self._compiler = None
        close = getattr(self.runner.model, "close", None)  # a tensor-parallel model's workers
        if close is not None:
            close()


def _ngram(seq: Sequence) -> Drafter:
    return NgramIndex()


def _empty_run(vocab_size: int) -> RunnerOutput:
    return RunnerOutput([], torch.empty(0, vocab_size), {})
