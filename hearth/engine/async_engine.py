"""AsyncEngine: the LLMEngine behind asyncio, for the server. A background thread runs
steps while there is work; `generate()` streams a request's outputs; `abort()` (or
cancelling / closing the iterator) stops a request and frees its blocks before the next
step. Knows nothing of HTTP.

One lock guards the engine. The step thread lets any caller that is waiting for the lock
go first (a waiter count), so adds and aborts never starve behind a busy engine."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from hearth.engine.llm_engine import LLMEngine
from hearth.engine.metrics import EngineMetrics
from hearth.engine.outputs import RequestOutput
from hearth.engine.sampling_params import SamplingParams


@dataclass
class _Stream:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[RequestOutput | BaseException]

    def put(self, item: RequestOutput | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class AsyncEngine:
    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._num_waiters = 0
        self._wake = threading.Event()
        self._streams: dict[str, _Stream] = {}
        self._ids = itertools.count()
        self._cancelled: set[str] = set()
        self._stopped = False
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
            if not busy:
                self._wake.wait()
                self._wake.clear()

    def _add(
        self, request_id: str, prompt: str | list[int], params: SamplingParams, stream: _Stream
    ) -> None:
        with self._engine_lock() as engine:
            if request_id in self._cancelled:  # the caller gave up while we waited
                self._cancelled.discard(request_id)
                return
            engine.add_request(request_id, prompt, params)
            self._streams[request_id] = stream
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
        try:
            await asyncio.to_thread(self._add, rid, prompt, params, stream)
        except asyncio.CancelledError:
            # the add may still be running in its thread: make sure it ends aborted
            with self._engine_lock() as engine:
                if rid in self._streams:
                    engine.abort(rid)
                    del self._streams[rid]
                else:
                    self._cancelled.add(rid)
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
                self.abort(rid)

    def abort(self, request_id: str) -> None:
        """Stop the request; its blocks are free when this returns (waits at most one
        step). Unknown or finished ids are ignored."""
        with self._engine_lock() as engine:
            engine.abort(request_id)
            self._streams.pop(request_id, None)

    async def embed(self, prompts: list[str | list[int]]) -> tuple[list[list[float]], list[int]]:
        """Pooled, normalised hidden states of each prompt (embeddings.py) and each prompt's
        token count. Runs between steps (it holds the engine lock) in a worker thread."""

        def run() -> tuple[list[list[float]], list[int]]:
            from hearth.engine.embeddings import pooled_embeddings

            ids = [self.engine.tokenize(p) for p in prompts]
            for one in ids:
                if len(one) > self.engine.max_model_len:
                    from hearth.errors import ContextLengthError

                    raise ContextLengthError(len(one), self.engine.max_model_len)
            with self._engine_lock() as engine:
                vectors = pooled_embeddings(engine.runner.model, ids, engine.config.block_size)
            return vectors, [len(one) for one in ids]

        return await asyncio.to_thread(run)

    def metrics(self) -> EngineMetrics:
        with self._engine_lock() as engine:
            return engine.metrics()

    def shutdown(self) -> None:
        """Stop the step thread; requests in flight are aborted."""
        with self._engine_lock() as engine:
            self._stopped = True
            for rid in list(engine.requests):
                engine.abort(rid)
            for stream in self._streams.values():
                stream.put(RuntimeError("the engine was shut down"))
            self._streams.clear()
        self._wake.set()
        self._thread.join(timeout=10)
        self.engine.shutdown()
