"""Routers of the simulated fleet. `prefix` models hearth.serve.replicas (its router's
choice, hearth.serve.replicas.prefix.choose, at system-prompt granularity): the replica
that served the prompt's prefix unless it has more than `imbalance_threshold` requests in
flight beyond the least loaded, else the less loaded of two replicas drawn at random (Ray
Serve's power-of-two choices: an exact least-loaded search over a thousand replicas per
request is what a real router cannot afford either). A new prefix goes to the least loaded
replica of all, ties to the one owning fewest prefixes, so prefixes spread evenly."""

from __future__ import annotations

import random
from collections.abc import Sequence

from hearth.sim.replica import SimReplica
from hearth.sim.trace import SimRequest

ROUTINGS = ("round-robin", "random", "prefix")
EXACT_UP_TO = 16


class Router:
    def __init__(
        self, routing: str, num_replicas: int, seed: int = 0, imbalance_threshold: int = 8
    ) -> None:
        if routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {', '.join(ROUTINGS)}, got {routing!r}")
        self.routing = routing
        self.rng = random.Random(seed)
        self.imbalance_threshold = imbalance_threshold
        self.owner: dict[int, int] = {}
        self.owned = [0] * num_replicas
        self._next = 0

    def choose(self, request: SimRequest, replicas: Sequence[SimReplica]) -> int:
        n = len(replicas)
        if self.routing == "round-robin":
            self._next = (self._next + 1) % n
            return self._next
        if self.routing == "random":
            return self.rng.randrange(n)
        owner = self.owner.get(request.prefix_id)
        if owner is None:  # a new prefix (rare): the least loaded of all, fewest prefixes
            least = min(range(n), key=lambda i: (replicas[i].load, self.owned[i]))
        else:  # as hearth's router for a few replicas; power of two choices for many
            pool = range(n) if n <= EXACT_UP_TO else (self.rng.randrange(n), self.rng.randrange(n))
            least = min(pool, key=lambda i: (replicas[i].load, self.owned[i]))
            if replicas[owner].load - replicas[least].load <= self.imbalance_threshold:
                return owner
        if owner is not None:
            self.owned[owner] -= 1
        self.owner[request.prefix_id] = least
        self.owned[least] += 1
        return least
