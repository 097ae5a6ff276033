"""`hearth arena` in a terminal (a real pseudo-terminal through pexpect, the real CLI, two
real local models): a prompt drawn from an MT-Bench file, both turns answered as A and B,
the vote, then the names; the battle is stored with both turns."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pexpect
import pytest

from hearth.arena.battles import BattleStore
from hearth.config import load_settings

DATA = Path(__file__).parent / "data"
MODELS = ("smollm2:135m", "twin:135m")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def stored(hearth_home: Path, smollm2_gguf: Path) -> None:
    from hearth.store import Store

    store = Store(load_settings())
    for name in MODELS:
        store.import_path(smollm2_gguf, name)


@pytest.mark.usefixtures("stored")
def test_terminal_battle(tmp_path: Path) -> None:
    prompts = tmp_path / "one.jsonl"
    prompts.write_text(
        (DATA / "mt_bench_questions_sample.jsonl").read_text().splitlines()[0] + "\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "160", "NO_COLOR": "1"}
    child = pexpect.spawn(
        sys.executable,
        ["-m", "hearth", "arena", "--prompts", str(prompts), "--max-tokens", "8", "--seed", "3"],
        env=env, encoding="utf-8", timeout=300,
    )  # fmt: skip
    try:
        child.expect("next turn:")  # MT-Bench's second turn continues the same pair
        child.expect("vote: a, b")
        child.sendline("b")
        child.expect(r"A was (\S+), B was (\S+)")
        revealed = {child.match.group(1), child.match.group(2)}
        child.expect("another battle")
        child.sendline("n")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert revealed == set(MODELS)
    (battle,) = BattleStore(load_settings().db_url).all()
    assert battle.winner == "model_b" and battle.num_turns == 2 and battle.voter == "terminal"
    assert [m["role"] for m in battle.conversation_a] == ["user", "assistant"] * 2


def test_terminal_needs_two_models(hearth_home: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = pexpect.spawn(
        sys.executable, ["-m", "hearth", "arena"], env=env, encoding="utf-8", timeout=120
    )
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2
    assert "at least two models" in " ".join(child.before.split())


def test_prompt_file_forms(tmp_path: Path) -> None:
    from hearth.cli.arena_terminal import load_prompts
    from hearth.errors import UserInputError

    good = tmp_path / "good.jsonl"
    good.write_text('{"turns": ["one", "two"]}\n\n{"prompt": "p"}\n{"text": "t"}\n')
    assert load_prompts(good) == [["one", "two"], ["p"], ["t"]]
    assert len(load_prompts(DATA / "mt_bench_questions_sample.jsonl")) == 4
    for bad in ("[1, 2]", '{"turns": "x"}', '{"other": 1}', "{nope"):
        path = tmp_path / "bad.jsonl"
        path.write_text('{"prompt": "fine"}\n' + bad + "\n")
        with pytest.raises(UserInputError, match="line 2"):
            load_prompts(path)
