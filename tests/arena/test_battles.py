"""hearth.arena.battles and identity on a real SQLite database: votes kept honestly (one
vote, only once both answers are in, 404/409 errors), identity leaks kept but not rated,
both-bad distinct from tie."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.arena.battles import BattleStore, NewBattle
from hearth.arena.identity import find_leak, name_words
from hearth.errors import ConflictError, NotFoundError


@pytest.fixture
def store(tmp_path: Path) -> BattleStore:
    return BattleStore(f"sqlite:///{tmp_path / 'arena.db'}")


def _answer(store: BattleStore, bid: str, text_a: str, text_b: str):  # type: ignore[no-untyped-def]
    user = {"role": "user", "content": "hi"}
    return store.finish_turn(
        bid,
        [user, {"role": "assistant", "content": text_a}],
        [user, {"role": "assistant", "content": text_b}],
        {},
    )


def test_vote_only_once_and_only_when_answered(store: BattleStore) -> None:
    bid = store.start("smollm2:135m", "gemma3:270m", "hi")
    with pytest.raises(ConflictError, match="still answering"):
        store.vote(bid, "model_a")
    battle = _answer(store, bid, "Hello!", "Hi there.")
    assert battle.answers_done and battle.leak is None
    voted = store.vote(bid, "tie (bothbad)", voter="ann")
    assert voted.winner == "tie (bothbad)" and voted.rated and voted.voter == "ann"
    with pytest.raises(ConflictError, match="already voted"):
        store.vote(bid, "model_b")
    with pytest.raises(NotFoundError):
        store.vote("nope", "tie")
    outcome = store.rated()[0]
    assert outcome.winner == "tie (bothbad)"  # both-bad is not turned into a tie when stored


def test_identity_leak_is_kept_but_not_rated(store: BattleStore) -> None:
    bid = store.start("smollm2:135m", "other:1b", "who are you?")
    battle = _answer(store, bid, "I am SmolLM, a small model.", "An assistant.")
    assert battle.leak == "smollm"
    assert not store.vote(bid, "model_a").rated
    assert store.rated() == []
    assert len(store.all()) == 1


def test_identity_words() -> None:
    assert {"smollm2", "smollm"} <= name_words("smollm2:135m-q4_1")
    assert "135m" not in name_words("smollm2:135m") and "q4" not in name_words("x:q4_0")
    assert find_leak(["As a model trained by Google..."], []) == "google"
    assert find_leak(["The capital of France is Paris."], ["smollm2:135m", "gemma3:270m"]) is None
    assert find_leak(["I'm Gemma."], ["gemma3:270m"]) == "gemma"


def test_multi_turn_continues_the_pair(store: BattleStore) -> None:
    bid = store.start("m1:x", "m2:x", "first")
    _answer(store, bid, "one", "uno")
    store.reopen(bid, "second")
    with pytest.raises(ConflictError, match="still answering"):
        store.reopen(bid, "third")
    with pytest.raises(ConflictError, match="still answering"):
        store.vote(bid, "model_a")


def test_add_many_checks_leaks_and_winner(store: BattleStore) -> None:
    conv = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "ChatGPT here"}]
    store.add_many([NewBattle("a", "b", "model_a", conv, conv)])
    assert store.all()[0].leak == "chatgpt" and store.rated() == []
    with pytest.raises(ValueError, match="winner"):
        NewBattle("a", "b", "left", [], [])
