"""PrefixAffinityRouter: Ray Serve's RequestRouter for the engine replicas. It runs inside
the ingress (the process that holds the deployment handle), so its PrefixTable needs no
actor of its own. A request carries its prompt's block hashes (`block_hashes=` keyword);
the router sends it to the replica that served the longest prefix of them unless that
replica has `imbalance_threshold` more requests in flight than the least loaded, and
records the choice. `routing="random"` is the baseline it is measured against.

Ray Serve routes many pending requests concurrently, and `on_request_routed` fires only
after a request was sent: a burst of 32 chats over 4 system prompts then found no owner
for any of them and spread every prompt over every replica (measured: the same hit rate as
random). So the router records its intended replica and counts it in flight when it
chooses (Ray's queue-length cache lags a burst too), corrects both when Ray sends the
request elsewhere (the owner was full), and releases the count when the request completes.
Imports Ray: loaded only by Ray Serve."""

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
        self.in_flight: dict[str, int] = {}  # replica -> requests this router has on it
        self.placed: dict[str, str] = {}  # internal request id -> replica counted for it

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
        loads = {
            rid: max(cache.get(by_id[rid].replica_id) or 0, self.in_flight.get(rid, 0))
            for rid in ids
        }
        hashes = _hashes(pending_request)
        owner, _ = self.table.longest(hashes, set(ids))
        held = {rid: self.table.held(rid) for rid in ids}
        ranks = [rank for rank in choose(owner, loads, self.imbalance_threshold, held) if rank]
        self._place(pending_request, ranks[0][0], hashes)
        return [[by_id[rid] for rid in rank] for rank in ranks]

    def _place(self, pending_request: PendingRequest, replica: str, hashes: list[str]) -> None:
        """Count the request on `replica` and make it the owner of its prefix."""
        request = pending_request.metadata.internal_request_id
        previous = self.placed.get(request)
        if previous != replica:
            if previous in self.in_flight:
                self.in_flight[previous] -= 1
            self.in_flight[replica] = self.in_flight.get(replica, 0) + 1
            self.placed[request] = replica
        self.table.record(hashes, replica)

    def on_request_routed(
        self, pending_request: PendingRequest, replica_id: ReplicaID, result: ReplicaResult
    ) -> None:
        if self.routing != "random":
            self._place(pending_request, replica_id.unique_id, _hashes(pending_request))

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        replica = self.placed.pop(internal_request_id, None)
        if replica in self.in_flight:  # not a replica that died since
            self.in_flight[replica] -= 1

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self.table.forget(replica_id.unique_id)
        self.in_flight.pop(replica_id.unique_id, None)


def _hashes(pending_request: PendingRequest) -> list[str]:
    return list(pending_request.kwargs.get("block_hashes") or ())
