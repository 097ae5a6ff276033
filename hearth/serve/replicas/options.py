"""ReplicaOptions: how `hearth serve --replicas` runs its engines on Ray Serve, checked when
built. Knows nothing of Ray or FastAPI."""

from __future__ import annotations

from dataclasses import dataclass

ROUTINGS = ("prefix", "random")


@dataclass(frozen=True)
class ReplicaOptions:
    """num_replicas: replicas at start. min_replicas / max_replicas: Ray Serve's autoscaling
        bounds (both None: a fixed num_replicas); it adds a replica when the requests in
        flight per replica pass target_ongoing_requests and removes one when they fall.
    ray_address: an existing Ray cluster ("HOST:PORT", "ray://HOST:PORT" or "auto"); None
        starts a local one on 127.0.0.1 for this server.
    threads_per_replica: torch threads (and Ray CPUs) each replica takes.
    routing: "prefix" (a prompt goes to the replica holding its first KV blocks unless that
        one has `imbalance_threshold` more requests in flight than the least loaded) or
        "random" (the baseline the prefix routing is measured against).
    max_ongoing_requests: requests one replica takes at once (its engine batches them);
        more wait in the router.
    connect_timeout_s: how long to wait for a Ray address to answer before giving up."""

    num_replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    ray_address: str | None = None
    threads_per_replica: int = 1
    routing: str = "prefix"
    imbalance_threshold: int = 8
    max_ongoing_requests: int = 64
    target_ongoing_requests: float = 8.0
    connect_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.num_replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.num_replicas}")
        for name in ("threads_per_replica", "max_ongoing_requests"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {', '.join(ROUTINGS)}, got {self.routing!r}")
        if self.imbalance_threshold < 0:
            raise ValueError(f"imbalance_threshold must be >= 0, got {self.imbalance_threshold}")
        if self.target_ongoing_requests <= 0:
            raise ValueError(
                f"target_ongoing_requests must be > 0, got {self.target_ongoing_requests}"
            )
        if self.connect_timeout_s <= 0:
            raise ValueError(f"connect_timeout_s must be > 0, got {self.connect_timeout_s}")
        low, high = self.lowest, self.highest
        if low < 1:
            raise ValueError(f"min_replicas must be >= 1, got {low}")
        if not low <= self.num_replicas <= high:
            raise ValueError(
                f"replicas ({self.num_replicas}) must lie between min_replicas ({low}) and "
                f"max_replicas ({high})"
            )

    @property
    def lowest(self) -> int:
        return self.num_replicas if self.min_replicas is None else self.min_replicas

    @property
    def highest(self) -> int:
        return self.num_replicas if self.max_replicas is None else self.max_replicas

    @property
    def autoscales(self) -> bool:
        return self.lowest != self.highest

    def describe(self) -> str:
        """One line for the server's start-up banner."""
        scale = (
            f"{self.num_replicas} (autoscaling {self.lowest}-{self.highest})"
            if self.autoscales
            else str(self.num_replicas)
        )
        where = self.ray_address or "a local Ray on 127.0.0.1"
        return (
            f"replicas: {scale} per chat model, {self.threads_per_replica} thread(s) each, on "
            f"Ray Serve at {where}; routing: {self.routing}"
        )
