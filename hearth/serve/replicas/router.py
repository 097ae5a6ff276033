"""PrefixAffinityRouter: Ray Serve's RequestRouter for the engine replicas. It runs inside
the ingress (the process that holds the deployment handle), so its PrefixTable needs no
actor of its own. A request carries its prompt's block hashes (`block_hashes=` keyword);
the router sends it to the replica that served the longest prefix of them unless that
replica has `imbalance_threshold` more requests in flight than the least loaded, and
records the choice. `routing="random"` is the baseline it is measured against. Imports Ray:
loaded only by Ray Serve (and deployment.py)."""

from __future__ import annotations

import random
from typing import Any

from ray.serve.request_router import (
    PendingRequest,
    ReplicaID,
    ReplicaResult,
    RequestRouter,
    RunningReplica,
)

from hearth.serve.replicas.prefix import PrefixTable, choose


class PrefixAffinityRouter(RequestRouter):
    def initialize_state(self, **kwargs: Any) -> None:
        self.routing: str = kwargs.get("routing", "prefix")
        self.imbalance_threshold: int = int(kwargs.get("imbalance_threshold", 8))
        self.table = PrefixTable()

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        if not candidate_replicas:
            return []
        if self.routing == "random" or pending_request is None:
            return [[random.choice(candidate_replicas)]]
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        ids = list(by_id)
        random.shuffle(ids)  # ties left by load and cache size: no fixed first choice
        cache = self._replica_queue_len_cache
        loads = {rid: cache.get(by_id[rid].replica_id) or 0 for rid in ids}
        owner, _ = self.table.longest(_hashes(pending_request), set(ids))
        held = {rid: self.table.held(rid) for rid in ids}
        ranks = choose(owner, loads, self.imbalance_threshold, held)
        return [[by_id[rid] for rid in rank] for rank in ranks if rank]

    def on_request_routed(
        self, pending_request: PendingRequest, replica_id: ReplicaID, result: ReplicaResult
    ) -> None:
        self.table.record(_hashes(pending_request), replica_id.unique_id)

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self.table.forget(replica_id.unique_id)


def _hashes(pending_request: PendingRequest) -> list[str]:
    return list(pending_request.kwargs.get("block_hashes") or ())
