"""BlockManager: the fixed pool of KV-cache blocks and who holds which, with prefix caching.

A block holds `block_size` tokens' K/V. A full block is keyed by a hash of its tokens and of
every token before it (the parent block's hash; the first block's parent is the sequence's
LoRA adapter key, so only sequences of the same adapter, or none, share blocks), so two sequences that share a prefix
share its blocks, counted by references. A block whose last holder is gone keeps its key
and stays in an LRU list of cached-free blocks: it is reused as-is by a later request with
the same prefix, or evicted (oldest first) when the pool needs a fresh block.

Knows nothing of tensors, the model or sampling: block ids index the tensors
`model/kv_cache.py` allocates."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from hearth.engine.sequence import Sequence


def block_hash(parent: int | None, tokens: tuple[int, ...]) -> int:
    """Chained content hash of one full block. Python's hash of an int tuple is stable
    across processes (no hash randomisation for ints); content is compared on every hit,
    so a collision costs a cache miss, never a wrong answer."""
    return hash((parent if parent is not None else -1, tokens))


@dataclass
class Block:
    block_id: int
    ref_count: int = 0
    hash: int | None = None  # set while the block is in the prefix cache
    key: tuple[int | None, tuple[int, ...]] = field(default=(None, ()))  # (parent hash, tokens)


class BlockManager:
    """Hands out blocks from a pool of `num_blocks`.

    Free blocks are of two kinds: never-keyed ones (`_free`) and cached ones
    (`_cached_free`, LRU order, oldest first). A fresh block comes from `_free` first, so
    cached prefixes survive as long as possible.
    """

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self._free: deque[int] = deque(range(num_blocks))
        self._cached_free: OrderedDict[int, None] = OrderedDict()
        self._hash_to_block: dict[int, int] = {}
        self.num_prefix_hit_tokens = 0  # lifetime counter, for metrics

    # -- counters -------------------------------------------------------------------
    @property
    def num_free_blocks(self) -> int:
        """Blocks no sequence holds (including cached ones that may be evicted)."""
        return len(self._free) + len(self._cached_free)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - self.num_free_blocks

    @property
    def num_cached_blocks(self) -> int:
        """Blocks in the prefix cache (held or not)."""
        return len(self._hash_to_block)

    # -- hashing --------------------------------------------------------------------
    def _ensure_hashes(self, seq: Sequence, num_full_blocks: int) -> None:
        bs = self.block_size
        while len(seq.block_hashes) < num_full_blocks:
            i = len(seq.block_hashes)
            parent = seq.block_hashes[-1] if i else seq.prefix_key
            seq.block_hashes.append(block_hash(parent, tuple(seq.token_ids[i * bs : (i + 1) * bs])))

    def _lookup(self, seq: Sequence, i: int) -> int | None:
        """The cached block holding seq's i-th full block, if any."""
        block_id = self._hash_to_block.get(seq.block_hashes[i])
        if block_id is None:
            return None
        bs = self.block_size
        parent = seq.block_hashes[i - 1] if i else seq.prefix_key
        if self.blocks[block_id].key != (parent, tuple(seq.token_ids[i * bs : (i + 1) * bs])):
            return None  # hash collision
        return block_id

    # -- allocation -----------------------------------------------------------------
    def _take_fresh(self) -> int:
        if self._free:
            block_id = self._free.popleft()
        else:
            block_id, _ = self._cached_free.popitem(last=False)  # evict the LRU cached block
            block = self.blocks[block_id]
            assert block.hash is not None
            del self._hash_to_block[block.hash]
            block.hash = None
            block.key = (None, ())
        block = self.blocks[block_id]
        assert block.ref_count == 0
        block.ref_count = 1
        return block_id

    def _take_cached(self, block_id: int) -> None:
        block = self.blocks[block_id]
        if block.ref_count == 0:
            del self._cached_free[block_id]
        block.ref_count += 1

    def allocate_prefix(self, seq: Sequence) -> int:
        """On admission of a sequence that holds no blocks: give it the cached blocks of
        its longest cached prefix. At least one token is always left to compute, since the
        step needs the last token's logits; with prompt logprobs, every position from the
        first one still wanted (len(seq.prompt_logprobs) - 1) is computed too. Returns the
        number of tokens served."""
        assert not seq.block_table and seq.num_computed_tokens == 0
        if not self.enable_prefix_caching:
            return 0
        max_blocks = self._shareable_blocks(seq)
        self._ensure_hashes(seq, max_blocks)
        for i in range(max_blocks):
            block_id = self._lookup(seq, i)
            if block_id is None:
                break
            self._take_cached(block_id)
            seq.block_table.append(block_id)
        num_tokens = len(seq.block_table) * self.block_size
        seq.num_computed_tokens = num_tokens
        seq.num_cached_tokens = num_tokens
        self.num_prefix_hit_tokens += num_tokens
        return num_tokens

    def _shareable_blocks(self, seq: Sequence) -> int:
        """How many of seq's leading full blocks a prefix hit may serve (allocate_prefix's
        bound: one token, or every wanted prompt logprob, is always computed)."""
        limit = len(seq) - 1
        if seq.params.prompt_logprobs is not None:
            limit = min(limit, len(seq.prompt_logprobs) - 1)
        return max(0, limit) // self.block_size

    def blocks_in_flight(self, seqs: list[Sequence]) -> set[int]:
        """The hashes of the full prompt blocks these sequences have yet to compute (this
        step's included): blocks that will be cached once their prefills get there."""
        pending: set[int] = set()
        if not self.enable_prefix_caching:
            return pending
        bs = self.block_size
        for seq in seqs:
            full = seq.num_prompt_tokens // bs
            done = seq.num_computed_tokens // bs
            if done >= full:
                continue
            self._ensure_hashes(seq, full)
            pending.update(seq.block_hashes[done:full])
        return pending

    def waits_for_prefix(self, seq: Sequence, in_flight: set[int]) -> bool:
        """Whether the first block of seq's prompt that is not cached is one a running
        prefill is computing (`blocks_in_flight`): admitted now, seq would compute it a
        second time; a step or two later it gets it from the cache."""
        if not in_flight or not self.enable_prefix_caching:
            return False
        max_blocks = self._shareable_blocks(seq)
        self._ensure_hashes(seq, max_blocks)
        for i in range(max_blocks):
            if self._lookup(seq, i) is None:
                return seq.block_hashes[i] in in_flight
        return False

    def num_blocks_needed(self, seq: Sequence, num_new_tokens: int) -> int:
        total = seq.num_blocks_for(seq.num_computed_tokens + num_new_tokens)
        return max(0, total - len(seq.block_table))

    def allocate(self, seq: Sequence, num_new_tokens: int) -> bool:
        """Give seq the blocks for its next `num_new_tokens` tokens; False (and nothing
        taken) if the pool is short."""
        needed = self.num_blocks_needed(seq, num_new_tokens)
        if needed > self.num_free_blocks:
            return False
        for _ in range(needed):
            seq.block_table.append(self._take_fresh())
        return True

    def cache_full_blocks(self, seq: Sequence) -> None:
        """After a step: key seq's blocks that are now full of computed tokens, so later
        requests can share them."""
        if not self.enable_prefix_caching:
            return
        num_full = min(seq.num_computed_tokens // self.block_size, len(seq.block_table))
        self._ensure_hashes(seq, num_full)
        bs = self.block_size
        for i in range(num_full):
            block = self.blocks[seq.block_table[i]]
            if block.hash is not None:
                continue
            h = seq.block_hashes[i]
            if h in self._hash_to_block:
                continue  # another sequence computed the same block first; keep theirs
            parent = seq.block_hashes[i - 1] if i else seq.prefix_key
            block.hash = h
            block.key = (parent, tuple(seq.token_ids[i * bs : (i + 1) * bs]))
            self._hash_to_block[h] = block.block_id

    def free(self, seq: Sequence) -> None:
        """Release all of seq's blocks. Cached ones stay reusable (LRU); tail blocks go
        first in eviction order, since a shared prefix is likelier to be reused."""
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            assert block.ref_count > 0, f"double free of block {block_id}"
            block.ref_count -= 1
            if block.ref_count == 0:
                if block.hash is not None:
                    self._cached_free[block_id] = None
                else:
                    self._free.append(block_id)
        seq.block_table = []
        seq.num_computed_tokens = 0

    def release_tail(self, seq: Sequence, num_tokens: int) -> None:
        """Release seq's blocks past those its first `num_tokens` tokens need (the K/V of
        rejected speculated tokens). They hold no full block of accepted tokens, so none
        is keyed in the prefix cache."""
        keep = seq.num_blocks_for(num_tokens)
        while len(seq.block_table) > keep:
            block = self.blocks[seq.block_table.pop()]
            assert block.ref_count == 1 and block.hash is None, "a speculated block is shared"
            block.ref_count = 0
            self._free.append(block.block_id)

    def trim_prefix_cache(self, keep: int) -> None:
        """Forget all but the `keep` most recently used cached blocks no sequence holds
        (before giving idle memory back: the latest conversation's prefix stays)."""
        while len(self._cached_free) > keep:
            block_id, _ = self._cached_free.popitem(last=False)
            block = self.blocks[block_id]
            assert block.hash is not None
            del self._hash_to_block[block.hash]
            block.hash = None
            block.key = (None, ())
            self._free.append(block_id)

    def uncached_free_blocks(self) -> list[int]:
        """Free blocks whose contents nothing will read again."""
        return list(self._free)

    def reset_prefix_cache(self) -> None:
        """Forget every cached block that no sequence holds."""
        for block_id in list(self._cached_free):
            block = self.blocks[block_id]
            assert block.hash is not None
            del self._hash_to_block[block.hash]
            block.hash = None
            block.key = (None, ())
            self._free.append(block_id)
        self._cached_free.clear()
