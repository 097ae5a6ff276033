"""Which replica holds which prompt prefix, at the engine's KV-block granularity. A prompt's
full blocks get chained hashes (block i's hash covers blocks 0..i, as the engine's block
manager keys its prefix cache), so two prompts share a hash exactly when they share that
many whole blocks. `PrefixTable` remembers the replica that last served each hash (bounded,
least recently used out) and answers the longest prefix some replica holds, as SGLang's
router and Ray Serve's PrefixCacheAffinityRouter do with a radix tree of text. Pure Python:
no Ray, no engine."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

# hashes kept per prompt: 64 blocks of 16 tokens cover the system prompts and few-shot
# prefixes routing cares about; deeper matches change little where a request goes
MAX_ROUTED_BLOCKS = 64


def block_hashes(
    prompt: Sequence[int], block_size: int, max_blocks: int = MAX_ROUTED_BLOCKS
) -> list[str]:
    """Chained hashes of the prompt's first full blocks (fewer than one block: none)."""
    hashes: list[str] = []
    previous = b""
    for i in range(min(len(prompt) // block_size, max_blocks)):
        block = prompt[i * block_size : (i + 1) * block_size]
        digest = hashlib.blake2b(previous, digest_size=12)
        digest.update(b"".join(t.to_bytes(4, "little", signed=True) for t in block))
        previous = digest.digest()
        hashes.append(previous.hex())
    return hashes


class PrefixTable:
    """block hash -> the replica that last served a prompt with it."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._owner: OrderedDict[str, str] = OrderedDict()
        self._held: dict[str, int] = {}  # replica -> blocks it holds here

    def held(self, replica: str) -> int:
        """Blocks `replica` is known to hold (a new prefix goes where this is smallest)."""
        return self._held.get(replica, 0)

    def __len__(self) -> int:
        return len(self._owner)

    def longest(self, hashes: Sequence[str], replicas: set[str]) -> tuple[str | None, int]:
        """(replica, blocks matched) for the longest prefix of `hashes` a replica among
        `replicas` holds; (None, 0) when none does."""
        for depth in range(len(hashes), 0, -1):
            owner = self._owner.get(hashes[depth - 1])
            if owner is not None and owner in replicas:
                return owner, depth
        return None, 0

    def record(self, hashes: Sequence[str], replica: str) -> None:
        for h in hashes:
            previous = self._owner.get(h)
            if previous is not None:
                self._held[previous] -= 1
            self._owner[h] = replica
            self._owner.move_to_end(h)
            self._held[replica] = self._held.get(replica, 0) + 1
        while len(self._owner) > self.max_entries:
            _, evicted = self._owner.popitem(last=False)
            self._held[evicted] -= 1

    def forget(self, replica: str) -> None:
        """Drop a replica that died or was removed (its cache went with it)."""
        for h in [h for h, r in self._owner.items() if r == replica]:
            del self._owner[h]
        self._held.pop(replica, None)


def choose(
    owner: str | None,
    loads: dict[str, int],
    imbalance_threshold: int,
    held: dict[str, int] | None = None,
) -> list[list[str]]:
    """Replica ranks for a request: the prefix's owner first unless it has more than
    `imbalance_threshold` requests in flight beyond the least loaded; then the rest, least
    loaded first, and among equally loaded ones the one holding the fewest cached blocks
    (`held`: a new prefix goes where it evicts least, as SGLang's "smallest tenant"). A
    replica that is full falls through to the next rank."""
    held = held or {}
    by_load = sorted(loads, key=lambda r: (loads[r], held.get(r, 0)))
    if owner is not None and loads[owner] - loads[by_load[0]] <= imbalance_threshold:
        return [[owner], [r for r in by_load if r != owner]]
    return [[by_load[0]], by_load[1:]] if len(by_load) > 1 else [by_load]
