"""One group of model-parallel ranks: a gloo process group of `world_size` ranks met at a TCP
store, the three collectives the tensor-parallel shards need (all-reduce, all-gather along
the last dimension, broadcast of a picklable step from rank 0) and the point-to-point
send / receive that pipeline stages pass activations with.

The group is made directly (`ProcessGroupGloo` over a `TCPStore`), not through
`init_process_group`: that sets one process-wide default group, and a server may hold more
than one tensor-parallel model (each its own group, its own port). Knows nothing of the
engine, files or the environment (address and port arrive as values)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class GroupAddress:
    """Where the ranks meet: rank 0 listens on host:port (the torchrun MASTER_ADDR /
    MASTER_PORT pair). timeout_s bounds connecting to the store; a dead peer is noticed
    at once in any collective (its sockets close)."""

    host: str
    port: int
    world_size: int
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {self.world_size}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")


class TPGroup:
    """A rank's handle on its group. Made before the group meets (the shard's layers hold
    it while the weights load); `connect` joins the others. Collectives run in place on
    CPU tensors."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank = rank
        self.world_size = world_size
        self.pg: Any = None

    @staticmethod
    def store(address: GroupAddress, rank: int) -> Any:
        """The rendezvous store: rank 0 hosts it; the others connect (retrying until the
        address's timeout). Ranks also tell rank 0 there that their shard is loaded."""
        return dist.TCPStore(
            address.host,
            address.port,
            address.world_size,
            rank == 0,
            timeout=timedelta(seconds=address.timeout_s),
            wait_for_workers=False,
        )

    def connect(self, store: Any, timeout_s: float) -> None:
        """Meet every other rank (blocks until all have called this or the timeout passes).
        timeout_s then bounds every collective: a worker waits for the next step that long."""
        timeout = timedelta(seconds=timeout_s)
        self.pg = dist.ProcessGroupGloo(store, self.rank, self.world_size, timeout)

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, in place (the row-parallel projections' partial products)."""
        if self.world_size > 1:
            self.pg.allreduce([tensor]).wait()
        return tensor

    def all_gather_last(self, tensor: torch.Tensor) -> torch.Tensor:
        """(..., n) on each rank -> (..., world_size * n), rank 0's columns first."""
        if self.world_size == 1:
            return tensor
        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        self.pg.allgather([parts], [tensor]).wait()
        return torch.cat(parts, dim=-1)

    def broadcast_object(self, obj: Any = None) -> Any:
        """Rank 0 sends `obj` (pickled: tensors, lists, dataclasses), the others receive and
        return it. Two broadcasts: the length, then the bytes."""
        if self.rank == 0:
            payload = torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8)
            size = torch.tensor([payload.numel()], dtype=torch.int64)
        else:
            size = torch.zeros(1, dtype=torch.int64)
        self.pg.broadcast(size, 0).wait()
        if self.rank != 0:
            payload = torch.empty(int(size.item()), dtype=torch.uint8)
        self.pg.broadcast(payload, 0).wait()
        if self.rank == 0:
            return obj
        return pickle.loads(payload.numpy().tobytes())  # from our own rank 0, over the group

    def send(self, tensor: torch.Tensor, dst: int) -> None:
        """Send `tensor` to rank `dst` (returns once it is on its way; the receiver must
        know its shape and dtype)."""
        self.pg.send([tensor.contiguous()], dst, 0).wait()

    def recv(self, tensor: torch.Tensor, src: int) -> torch.Tensor:
        """Fill `tensor` (its shape and dtype those sent) from rank `src`; returns it."""
        self.pg.recv([tensor], src, 0).wait()
        return tensor
