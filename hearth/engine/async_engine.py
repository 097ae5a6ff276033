"""AsyncEngine: the LLMEngine behind asyncio, for the server. A background thread runs
steps while there is work; `generate()` streams a request's outputs; `abort()` (or
cancelling / closing the iterator) stops a request and frees its blocks before the next
step. Knows nothing of HTTP.

One lock guards the engine. The step thread lets any caller that is waiting for the lock
go first (a waiter count), so adds and aborts never starve behind a busy engine.

Embedding calls are engine work too: the step thread runs one chunk of the oldest call
(about one step's worth of tokens), then a generation step, and rotates between calls, so
a large embed call never holds a concurrent chat for its whole length.

After `idle_release_s` without work the step thread gives the free KV blocks' memory back
to the OS (LLMEngine.release_idle_memory): RSS returns to about what it was at start."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hearth.engine.embeddings import EmbeddingJob
from hearth.engine.llm_engine import LLMEngine
from hearth.engine.lora_adapters import Adapter
from hearth.engine.metrics import EngineMetrics
from hearth.engine.outputs import RequestOutput
from hearth.engine.sampling_params import SamplingParams
from hearth.errors import ContextLengthError, InvalidParameterError

# bounds on one embedding call (OpenAI allows 2048 inputs and 300k tokens; a CPU server
# keeps one request's work smaller)
MAX_EMBED_INPUTS = 256
MAX_EMBED_TOKENS = 65536
# a text this many times the context in characters is cut before tokenizing when the
# caller asked for truncation (no tokenizer's tokens average 32 characters)
_CHARS_PER_TOKEN_BOUND = 32


@dataclass
class _Stream:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[RequestOutput | BaseException]

    def put(self, item: RequestOutput | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


@dataclass
class _EmbedCall:
    job: EmbeddingJob
    counts: list[int]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[tuple[list[list[float]], list[int]]]
    cancelled: bool = field(default=False)

    def settle(self, error: BaseException | None = None) -> None:
        def done() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result((self.job.vectors, self.counts))

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            self.loop.call_soon_threadsafe(done)


# seconds without work before free KV blocks are given back to the OS; the most recent
# prefix cache is kept (IDLE_KEEP_CACHED_TOKENS), so a chat that pauses re-uses its prefix
IDLE_RELEASE_S = 10.0


class AsyncEngine:
    def __init__(self, engine: LLMEngine, idle_release_s: float | None = IDLE_RELEASE_S) -> None:
        self.engine = engine
        self.idle_release_s = idle_release_s
        self._worked = False  # work ran since the last release
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._num_waiters = 0
        self._wake = threading.Event()
        self._streams: dict[str, _Stream] = {}
        self._ids = itertools.count()
        self._cancelled: set[str] = set()
        # aborts asked from the event loop, which must never wait up to a step for the
        # lock: whoever takes the lock next applies them (before anything else)
        self._to_abort: deque[str] = deque()
        self._adding: set[str] = set()  # ids whose add is still on its way
        self._stopped = False
        # embedding calls in flight; appended from the event loop, read by the step thread
        # (deque's append / popleft / rotate are atomic, no lock needed)
        self._embeds: deque[_EmbedCall] = deque()
        self._thread = threading.Thread(target=self._run, name="hearth-engine", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def _engine_lock(self) -> Iterator[LLMEngine]:
        with self._cond:
            self._num_waiters += 1
        self._lock.acquire()
        with self._cond:
            self._num_waiters -= 1
            self._cond.notify_all()
        try:
            self._apply_aborts()
            yield self.engine
        finally:
            self._lock.release()

    def _run(self) -> None:
        while True:
            with self._cond:  # callers waiting for the lock go before the next step
                self._cond.wait_for(lambda: self._num_waiters == 0)
            failed: list[tuple[str, BaseException]] = []
            outputs: list[RequestOutput] = []
            with self._lock:
                if self._stopped:
                    return
                self._apply_aborts()
                embedding = self._embed_chunk()
                busy = self.engine.has_unfinished_requests()
                if busy:
                    try:
                        outputs = self.engine.step()
                    except Exception as step_error:
                        failed = [(rid, step_error) for rid in self.engine.last_failed]
                for out in outputs:
                    stream = self._streams.get(out.request_id)
                    if stream is not None:
                        stream.put(out)
                        if out.finished:
                            del self._streams[out.request_id]
                for rid, error in failed:
                    stream = self._streams.pop(rid, None)
                    if stream is not None:
                        stream.put(error)
            if busy:
                self._worked = True
            if busy or embedding:
                continue
            release = self._worked and self.idle_release_s is not None
            woke = self._wake.wait(self.idle_release_s if release else None)
            self._wake.clear()
            if not woke and release:
                self._release_idle()

    def _release_idle(self) -> None:
        with self._lock:
            if self._stopped or self.engine.has_unfinished_requests() or self._embeds:
                return
            self.engine.release_idle_memory()
            self._worked = False

    def _embed_chunk(self) -> bool:
        """Run one chunk of the oldest embedding call, then send it to the back. Returns
        whether embedding work remains."""
        while self._embeds and self._embeds[0].cancelled:
            self._embeds.popleft()
        if not self._embeds:
            return False
        call = self._embeds[0]
        runner = self.engine.runner
        self._worked = True

        def threads(num_tokens: int) -> None:
            wanted = runner.threads.for_step(num_tokens)
            if torch.get_num_threads() != wanted:
                torch.set_num_threads(wanted)

        try:
            call.job.run_chunk(runner.model, threads)
        except Exception as exc:
            self._embeds.popleft()
            call.settle(exc)
            return bool(self._embeds)
        if call.job.done:
            self._embeds.popleft()
            call.settle()
        else:
            self._embeds.rotate(-1)
        return bool(self._embeds)

    def _abort_soon(self, request_id: str) -> None:
        """Abort without waiting: the step thread (or the next lock holder) frees the
        blocks before its next step."""
        self._to_abort.append(request_id)
        self._wake.set()

    def _apply_aborts(self) -> None:
        """With the lock held."""
        while self._to_abort:
            rid = self._to_abort.popleft()
            if rid in self._streams or rid in self.engine.requests:
                self.engine.abort(rid)
                self._streams.pop(rid, None)
            elif rid in self._adding:
                self._cancelled.add(rid)  # its add has not run yet: it will skip it

    def _add(
        self, request_id: str, prompt: str | list[int], params: SamplingParams, stream: _Stream
    ) -> None:
        try:
            with self._engine_lock() as engine:
                if request_id in self._cancelled:  # the caller gave up while we waited
                    self._cancelled.discard(request_id)
                    return
                engine.add_request(request_id, prompt, params)
                self._streams[request_id] = stream
        finally:
            self._adding.discard(request_id)
        self._wake.set()

    async def generate(
        self,
        prompt: str | list[int],
        params: SamplingParams,
        request_id: str | None = None,
    ) -> AsyncIterator[RequestOutput]:
        """Stream the request's outputs (each with `delta_text` / `delta_token_ids`) until
        it finishes. Bad input raises before the first output. Leaving the loop early,
        cancelling the task or an exception in the consumer aborts the request."""
        if self._stopped:
            raise RuntimeError("the engine is shut down")
        rid = request_id if request_id is not None else f"req-{next(self._ids)}"
        stream = _Stream(asyncio.get_running_loop(), asyncio.Queue())
        # tokenizing and taking the lock can wait up to one step: keep the event loop free
        self._adding.add(rid)
        try:
            await asyncio.to_thread(self._add, rid, prompt, params, stream)
        except asyncio.CancelledError:
            # the add may still be running in its thread: make sure it ends aborted
            self._abort_soon(rid)
            raise
        finished = False
        try:
            while True:
                item = await stream.queue.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                if item.error is not None:
                    finished = True
                    raise item.error
                finished = item.finished
                yield item
                if finished:
                    return
        finally:
            if not finished:
                self._abort_soon(rid)

    def abort(self, request_id: str) -> None:
        """Stop the request; its blocks are free when this returns (waits at most one
        step). Unknown or finished ids are ignored."""
        with self._engine_lock() as engine:
            engine.abort(request_id)
            self._streams.pop(request_id, None)

    async def embed(
        self, prompts: list[str | list[int]], truncate: bool = False
    ) -> tuple[list[list[float]], list[int]]:
        """Pooled, normalised hidden states of each prompt (embeddings.py) and each prompt's
        token count. Tokenizes in a worker thread; the step thread computes the vectors a
        chunk at a time between generation steps. A prompt longer than the context is cut
        to it with `truncate`, else refused; see MAX_EMBED_* for the call's bounds."""
        if self._stopped:
            raise RuntimeError("the engine is shut down")
        if len(prompts) > MAX_EMBED_INPUTS:
            raise InvalidParameterError(
                "input", f"input: at most {MAX_EMBED_INPUTS} inputs per call, got {len(prompts)}"
            )
        ids = await asyncio.to_thread(self._embed_ids, prompts, truncate)
        loop = asyncio.get_running_loop()
        config = self.engine.config
        job = EmbeddingJob(
            ids, config.block_size, config.max_num_batched_tokens, self.engine.embedding_pooling
        )
        call = _EmbedCall(job, [len(one) for one in ids], loop, loop.create_future())
        self._embeds.append(call)
        self._wake.set()
        try:
            return await call.future
        finally:
            call.cancelled = True  # cancelled or done: the step thread drops it

    def _embed_ids(self, prompts: list[str | list[int]], truncate: bool) -> list[list[int]]:
        limit = self.engine.max_model_len
        out: list[list[int]] = []
        total = 0
        for i, prompt in enumerate(prompts):
            if isinstance(prompt, str) and truncate:
                prompt = prompt[: limit * _CHARS_PER_TOKEN_BOUND]
            if not prompt:
                raise InvalidParameterError("input", f"input[{i}] is empty; give some text")
            if isinstance(prompt, str):
                prompt = self.engine.embedding_prompt + prompt
            one = self.engine.tokenize(prompt)
            if len(one) > limit:
                if not truncate:
                    raise ContextLengthError(
                        len(one),
                        limit,
                        f"input[{i}] is {len(one)} tokens but the context is {limit}; shorten "
                        "it (or ask for truncation)",
                    )
                one = one[:limit]
            total += len(one)
            if total > MAX_EMBED_TOKENS:
                raise InvalidParameterError(
                    "input",
                    f"input: at most {MAX_EMBED_TOKENS} tokens per call in all; split the "
                    "inputs over several calls",
                )
            out.append(one)
        return out

    def metrics(self) -> EngineMetrics:
        with self._engine_lock() as engine:
            return engine.metrics()

    def add_lora(self, name: str, path: str | Path) -> Adapter:
        """Register a LoRA adapter between two steps (LLMEngine.add_lora); blocking."""
        with self._engine_lock() as engine:
            return engine.add_lora(name, path)

    def remove_lora(self, name: str) -> None:
        """Unregister it; requests already using it finish first (LLMEngine.remove_lora)."""
        with self._engine_lock() as engine:
            engine.remove_lora(name)

    def shutdown(self) -> None:
        """Stop the step thread; requests in flight are aborted."""
        with self._engine_lock() as engine:
            self._stopped = True
            for rid in list(engine.requests):
                engine.abort(rid)
            for stream in self._streams.values():
                stream.put(RuntimeError("the engine was shut down"))
            self._streams.clear()
            while self._embeds:
                self._embeds.popleft().settle(RuntimeError("the engine was shut down"))
        self._wake.set()
        self._thread.join(timeout=10)
        self.engine.shutdown()
