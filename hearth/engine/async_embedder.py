"""AsyncEmbedder: an Embedder for an asyncio server. Calls from many clients that arrive
while a forward runs are merged into the next one (batched across clients, padding-free),
so ten clients sending one sentence each cost one packed forward, not ten. Tokenizing and
computing run on worker threads, never on the event loop. Knows nothing of HTTP.

Its `embed(inputs, truncate)` answers as the generation engine's AsyncEngine.embed does
((vectors, token counts)), so the routes call either the same way."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from hearth.engine.embedder import MAX_INPUTS, Embedder, Tokenized
from hearth.engine.metrics import EngineMetrics
from hearth.errors import InvalidParameterError

# tokens of queued inputs merged into one call (bounds one call's activations and latency)
MAX_MERGED_TOKENS = 65536


@dataclass(eq=False)
class _Call:
    batch: Tokenized
    future: asyncio.Future[list[list[float]]] = field(repr=False)


class AsyncEmbedder:
    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._queue: list[_Call] = []
        self._draining = False
        # one computation at a time: torch's intra-op threads are the parallelism
        self._compute = threading.Lock()
        self._stopped = False
        self._tokens = 0  # tokens embedded or scored (lifetime)

    @property
    def kind(self) -> str:
        return self.embedder.kind

    async def embed(
        self, prompts: list[str | list[int]], truncate: bool = False
    ) -> tuple[list[list[float]], list[int]]:
        """(one vector per input, token counts); inputs over the model's limit are cut with
        `truncate`, else refused with both lengths."""
        self._check(len(prompts), "input")
        if self.kind != "embedding":
            raise InvalidParameterError(
                "model",
                "this is a rerank model: it scores documents against a query; use /v1/rerank "
                "with it, or give an embedding model (e.g. all-minilm)",
            )
        batch = await asyncio.to_thread(self.embedder.tokenize, prompts, truncate)
        future: asyncio.Future[list[list[float]]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(batch, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future, batch.counts

    async def _drain(self) -> None:
        try:
            while self._queue:
                calls: list[_Call] = []
                tokens = 0
                while self._queue and (not calls or tokens < MAX_MERGED_TOKENS):
                    call = self._queue.pop(0)
                    if call.future.done():  # its client left
                        continue
                    calls.append(call)
                    tokens += sum(call.batch.counts)
                if not calls:
                    continue
                merged = Tokenized(
                    [ids for c in calls for ids in c.batch.ids],
                    [t for c in calls for t in c.batch.type_ids],
                )
                try:
                    vectors = await asyncio.to_thread(self._vectors, merged)
                except Exception as exc:  # every waiting client hears it; the server goes on
                    for call in calls:
                        if not call.future.done():
                            call.future.set_exception(exc)
                    continue
                start = 0
                for call in calls:
                    n = len(call.batch.ids)
                    if not call.future.done():
                        call.future.set_result(vectors[start : start + n])
                    start += n
        finally:
            self._draining = False

    def _vectors(self, batch: Tokenized) -> list[list[float]]:
        with self._compute:
            rows = self.embedder.vectors(batch)
            self._tokens += sum(batch.counts)
        return [row.tolist() for row in rows]

    async def rerank(
        self, query: str, documents: list[str], truncate: bool = False
    ) -> tuple[list[float], list[int]]:
        """(relevance score per document, token counts)."""
        self._check(len(documents), "documents")
        return await asyncio.to_thread(self._rerank, query, documents, truncate)

    def _rerank(
        self, query: str, documents: list[str], truncate: bool
    ) -> tuple[list[float], list[int]]:
        with self._compute:
            out = self.embedder.rerank(query, documents, truncate)
            self._tokens += sum(out[1])
        return out

    def _check(self, n: int, what: str) -> None:
        if self._stopped:
            raise RuntimeError("the embedder is shut down")
        if n == 0:
            raise InvalidParameterError(what, f"{what}: give at least one text")
        if n > MAX_INPUTS:
            raise InvalidParameterError(
                what, f"{what}: at most {MAX_INPUTS} per call, got {n}; split the call"
            )

    def metrics(self) -> EngineMetrics:
        return EngineMetrics(prompt_tokens_total=self._tokens)

    def shutdown(self) -> None:
        self._stopped = True
        for call in self._queue:
            if not call.future.done():
                call.future.get_loop().call_soon_threadsafe(
                    call.future.set_exception, RuntimeError("the model was unloaded")
                )
        self._queue.clear()
