"""`hearth judge` end to end: two real local models (SmolLM2 under two names) answer
MT-Bench questions (both turns); the judge is an OpenAI-compatible server on 127.0.0.1
(`--judge-url`) that stands in for a hosted judge model, scripted so the outcome is known:
single grades are parsed, malformed judgments are counted (not guessed), pairwise verdicts
are asked in both orders and combined, and the judged battles are rated by the arena's
code (`hearth arena leaderboard --votes judge`)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from arena_server import serve
from cli_runner import Cli
from fastapi import FastAPI

DATA = Path(__file__).parent / "data"
MODELS = ("smollm2:135m", "twin:135m")


def judge_app() -> FastAPI:
    """judge "scripted": pairwise verdicts alternate [[A]], [[B]] (so the two orders agree:
    the first-listed model wins); "biased": always [[A]] (the position wins, not the
    answer). Single grades: 6 for a first turn, no rating for a second turn."""
    app = FastAPI()
    flip = itertools.cycle(["[[A]]", "[[B]]"])

    @app.post("/v1/chat/completions")
    async def chat(body: dict[str, Any]) -> dict[str, Any]:
        system, user = body["messages"][0]["content"], body["messages"][1]["content"]
        if "two AI assistants" in system:
            verdict = next(flip) if body["model"] == "scripted" else "[[A]]"
            text = f"Both are short. My verdict: {verdict}"
        elif "Conversation with User" in user:
            text = "I cannot decide on a rating."
        else:
            text = "Helpful enough. Rating: [[6]]"
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}

    return app


@pytest.fixture
def judge_url() -> Iterator[str]:
    with serve(judge_app()) as url:
        yield url + "/v1"


@pytest.fixture
def stored(hearth_home: Path, smollm2_gguf: Path) -> None:
    from hearth.config import load_settings
    from hearth.store import Store

    store = Store(load_settings())
    for name in MODELS:
        store.import_path(smollm2_gguf, name)


@pytest.mark.usefixtures("stored")
def test_judge_end_to_end(cli: Cli, judge_url: str) -> None:
    questions = DATA / "mt_bench_questions_sample.jsonl"
    common = ["judge", "--models", MODELS[0], "--models", MODELS[1], "--questions", str(questions),
              "--limit", "2", "--max-tokens", "12", "--judge-url", judge_url, "--json"]  # fmt: skip
    code, out, err = cli(*common, "--judge-model", "scripted")
    assert code == 0, err
    report = json.loads(out)
    # 2 models x 2 questions x 2 turns; every second turn's judgment is malformed
    assert report["single"] == {"judged": 8, "malformed": 4}
    assert report["mean_score"] == {MODELS[0]: 6.0, MODELS[1]: 6.0}
    # 1 pair x 2 questions x 2 turns, each judged in both orders; the orders agree
    assert report["pairwise"] == {
        "judged": 4,
        "battles": 4,
        "inconsistent_as_tie": 0,
        "malformed": 0,
    }

    code, out, err = cli(*common, "--judge-model", "biased", "--mode", "pairwise")
    assert code == 0, err
    pairwise = json.loads(out)["pairwise"]
    assert pairwise == {"judged": 4, "battles": 4, "inconsistent_as_tie": 4, "malformed": 0}

    code, out, err = cli("arena", "leaderboard", "--votes", "judge", "--json")
    assert code == 0, err
    board = {r["model"]: r for r in json.loads(out)}
    assert board[MODELS[0]]["wins"] == 4 and board[MODELS[0]]["ties"] == 4
    assert board[MODELS[1]]["losses"] == 4
    assert board[MODELS[0]]["rating"] > board[MODELS[1]]["rating"]
    # people's leaderboard does not count a judge's battles
    code, out, _ = cli("arena", "leaderboard", "--votes", "people", "--json")
    assert json.loads(out) == []


@pytest.mark.usefixtures("stored")
def test_local_store_model_as_judge(cli: Cli) -> None:
    """SmolLM2 judging itself: a weak judge, so what matters is that every judgment is
    either a parsed score or counted as malformed."""
    questions = DATA / "mt_bench_questions_sample.jsonl"
    code, out, err = cli("judge", "--models", MODELS[0], "--questions", str(questions), "--limit", "1",
        "--mode", "single", "--judge", MODELS[0], "--max-tokens", "8",
        "--judge-max-tokens", "24", "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["judge"] == MODELS[0] and report["single"]["judged"] == 2
    assert report["num_scores"][MODELS[0]] + report["single"]["malformed"] == 2


def test_judge_bad_input(cli: Cli, tmp_path: Path) -> None:
    q = DATA / "mt_bench_questions_sample.jsonl"
    code, _, err = cli("judge", "--models", "a", "--questions", str(q))
    assert code == 2 and "--judge MODEL" in err
    code, _, err = cli("judge", "--models", "a", "--questions", str(q), "--judge-url", "http://x")
    assert code == 2 and "--judge-model" in err
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"question_id": 1, "turns": "not a list"}\n')
    code, _, err = cli("judge", "--models", "a", "--questions", str(bad), "--judge", "j")
    assert code == 2 and "line 1" in err
