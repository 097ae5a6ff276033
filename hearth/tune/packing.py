"""Group tokenized examples into blocks of at most `seq_len` tokens and blocks into
micro-batches. A block is a list of whole examples laid end to end; the model runs each
example of a block as its own sequence (own positions from 0, causal attention inside it
only: the flat batch layout of model/batch.py), so packing never lets an example attend
across its boundary. Without packing a block holds one example. Knows nothing of tensors."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TypeVar

from hearth.tune.tokenize import TokenizedExample

__all__ = ["Block", "make_blocks", "micro_batches"]

T = TypeVar("T")


@dataclass(frozen=True)
class Block:
    examples: tuple[TokenizedExample, ...]

    @property
    def num_tokens(self) -> int:
        return sum(len(e) for e in self.examples)

    @property
    def num_trained(self) -> int:
        return sum(e.num_trained for e in self.examples)


def make_blocks(examples: list[TokenizedExample], seq_len: int, pack: bool) -> list[Block]:
    """Blocks in the examples' order: each example goes into the first open block it fits
    (first-fit; examples are never split, each is at most seq_len long)."""
    if not pack:
        return [Block((e,)) for e in examples]
    blocks: list[list[TokenizedExample]] = []
    room: list[int] = []
    for example in examples:
        for index, free in enumerate(room):
            if len(example) <= free:
                blocks[index].append(example)
                room[index] -= len(example)
                break
        else:
            blocks.append([example])
            room.append(seq_len - len(example))
    return [Block(tuple(b)) for b in blocks]


def micro_batches(blocks: list[T], batch_size: int, seed: int, epoch: int) -> list[list[T]]:
    """The epoch's micro-batches: blocks shuffled by (seed, epoch), `batch_size` per batch
    (the last may be smaller). The same seed and epoch give the same batches, so a resumed
    run sees what the uninterrupted one would have."""
    order = list(range(len(blocks)))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return [
        [blocks[i] for i in order[s : s + batch_size]] for s in range(0, len(order), batch_size)
    ]
