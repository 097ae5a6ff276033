"""ReplicaEngine: what the routes stream from when a model runs on replicas — the same
`generate` / `metrics` / `shutdown` as AsyncEngine, over a Ray Serve DeploymentHandle.
Each request carries its prompt's block hashes for the router; the stream's first item
names the replica (the response header), its last one is that replica's engine counters
(kept per replica for /metrics). A replica that dies mid-request fails the request with a
retryable CapacityError (503 + Retry-After) while the others go on; an error the replica's
engine raised (too long a prompt, a bad grammar) arrives as itself. Leaving the stream
early cancels the replica's request, which aborts it there. Never touches tensors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from hearth.engine.metrics import EngineMetrics
from hearth.engine.outputs import RequestOutput
from hearth.engine.sampling_params import SamplingParams
from hearth.errors import CapacityError, HearthError
from hearth.serve.replicas.cluster import stop_application
from hearth.serve.replicas.deployment import ReplicaTag
from hearth.serve.replicas.header import note_replica
from hearth.serve.replicas.prefix import block_hashes

# seconds a client should wait before retrying a request whose replica died: Ray Serve
# notices the death at its next health check (every 2 s) and routes to the others
RETRY_AFTER_S = 2.0


class ReplicaEngine:
    def __init__(self, handle: Any, model_name: str, block_size: int) -> None:
        self.handle = handle
        self.model_name = model_name
        self.block_size = block_size
        # replica -> its engine's counters at the end of its latest request
        self.replica_metrics: dict[str, EngineMetrics] = {}

    async def generate(
        self, prompt: list[int], params: SamplingParams, request_id: str
    ) -> AsyncIterator[RequestOutput]:
        from ray.exceptions import RayError, RayTaskError
        from ray.serve.exceptions import RayServeException

        hashes = block_hashes(prompt, self.block_size)
        stream = self.handle.options(stream=True).generate.remote(
            prompt, params, request_id, block_hashes=hashes
        )
        replica: str | None = None
        try:
            async for item in stream:
                if isinstance(item, ReplicaTag):
                    replica = item.replica
                    note_replica(replica)
                elif isinstance(item, EngineMetrics):
                    self.replica_metrics[str(replica)] = item
                else:
                    yield item
        except RayTaskError as exc:  # the replica's code raised: hand its error on as is
            cause = exc.cause
            if isinstance(cause, HearthError | ValueError | TypeError):
                raise cause from None
            raise self._lost(replica, exc) from exc
        except (RayError, RayServeException) as exc:
            raise self._lost(replica, exc) from exc
        finally:
            stream.cancel()  # a no-op once finished; otherwise aborts it on the replica

    def _lost(self, replica: str | None, exc: BaseException) -> CapacityError:
        if replica is not None:
            self.replica_metrics.pop(replica, None)
        which = f"replica {replica}" if replica else "its replica"
        return CapacityError(
            f"{which} of {self.model_name} stopped while answering ({type(exc).__name__}); "
            "retry: the other replicas still serve and Ray Serve starts a new one",
            retry_after=RETRY_AFTER_S,
        )

    def metrics(self) -> EngineMetrics:
        """All replicas' counters summed (the model's row on /metrics)."""
        total = EngineMetrics()
        for snapshot in list(self.replica_metrics.values()):
            total = total + snapshot
        return total

    def shutdown(self) -> None:
        stop_application(self.model_name)
