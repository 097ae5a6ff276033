"""Block hashes of prompts and the prefix table the replica router decides with."""

from __future__ import annotations

from hearth.serve.replicas.prefix import PrefixTable, block_hashes, choose


def test_block_hashes_are_chained_over_full_blocks() -> None:
    a = block_hashes(list(range(40)), block_size=16)
    b = block_hashes([*range(32), 99, 98], block_size=16)
    c = block_hashes([7, *range(1, 40)], block_size=16)
    assert len(a) == 2 and len(b) == 2  # the partial third block has no hash
    assert a == b  # same first 32 tokens
    assert c[0] != a[0] and c[1] != a[1]  # a change in block 0 changes every later hash
    assert block_hashes(list(range(15)), block_size=16) == []
    assert len(block_hashes(list(range(10_000)), block_size=16, max_blocks=4)) == 4


def test_longest_prefix_wins_and_dead_replicas_are_forgotten() -> None:
    table = PrefixTable()
    system = block_hashes(list(range(64)), 16)
    chat = block_hashes([*range(64), *range(100, 132)], 16)
    table.record(system, "r1")
    table.record(chat, "r2")  # r2 served a longer prompt with the same system part
    assert table.longest(chat, {"r1", "r2"}) == ("r2", 6)
    assert table.longest(system, {"r1", "r2"}) == ("r2", 4)  # the last server of a block
    assert table.longest(chat, {"r1"}) == (None, 0)  # r2 is not a candidate now
    assert table.held("r2") == 6 and table.held("r1") == 0
    table.forget("r2")
    assert table.longest(chat, {"r1", "r2"}) == (None, 0) and len(table) == 0


def test_table_is_bounded_least_recent_out() -> None:
    table = PrefixTable(max_entries=3)
    table.record(["a", "b"], "r1")
    table.record(["c", "d"], "r2")
    assert len(table) == 3 and table.longest(["a"], {"r1", "r2"}) == (None, 0)
    assert table.held("r1") + table.held("r2") == 3


def test_choose_prefers_the_owner_unless_much_busier() -> None:
    loads = {"r1": 3, "r2": 0, "r3": 1}
    assert choose("r1", loads, imbalance_threshold=4) == [["r1"], ["r2", "r3"]]
    assert choose("r1", loads, imbalance_threshold=2) == [["r2"], ["r3", "r1"]]
    # no owner: the least loaded; equal loads: the one holding fewest cached blocks
    assert choose(None, {"r1": 0, "r2": 0}, 4, held={"r1": 5, "r2": 1})[0] == ["r2"]
    assert choose(None, {"r1": 0}, 4) == [["r1"]]
