"""The arena API through a real uvicorn on 127.0.0.1 with two real local models (the
SmolLM2 GGUF imported under two names): a battle streams both answers as `a` / `b` events
without naming the models, the vote is stored and only then are the names returned; a
second vote, a vote on an unknown battle, a vote before the answers finish, fewer than two
models and a further turn behave as the API says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from arena_server import serve

from hearth.arena.battles import BattleStore
from hearth.arena.identity import find_leak
from hearth.config import load_settings
from hearth.serve.app import create_app
from hearth.serve.options import ServeOptions

NAMES = ("smollm2:135m", "twin:135m")


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path
) -> Iterator[tuple[str, str]]:
    from hearth.store import Store

    home = tmp_path_factory.mktemp("arena-home")
    settings = load_settings({"HEARTH_HOME": str(home)})
    store = Store(settings)
    for name in NAMES:
        store.import_path(smollm2_gguf, name)
    options = ServeOptions(port=0, kv_cache_gb=0.1, max_model_len=1024, keep_alive_s=300)
    with serve(create_app(settings, options)) as url:
        yield url, settings.db_url


def _events(response: httpx.Response) -> list[tuple[str, dict[str, object]]]:
    events, name = [], ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((name, json.loads(line.removeprefix("data: "))))
    return events


def _battle(
    client: httpx.Client, url: str, body: dict[str, object]
) -> list[tuple[str, dict[str, object]]]:
    with client.stream("POST", url, json=body, timeout=300) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return _events(r)


def test_battle_vote_reveal(server: tuple[str, str]) -> None:
    base, db_url = server
    with httpx.Client(base_url=base) as client:
        body = {"prompt": "Name three colours.", "max_tokens": 24, "temperature": 0.0}
        events = _battle(client, "/api/arena/battles", body)
        kinds = [k for k, _ in events]
        assert kinds[0] == "battle" and kinds[-1] == "done"
        assert "a" in kinds and "b" in kinds
        raw = json.dumps(events)
        assert not any(n in raw for n in NAMES)  # anonymous while answering
        bid = str(events[0][1]["battle_id"])
        text_a = "".join(str(d["text"]) for k, d in events if k == "a")
        text_b = "".join(str(d["text"]) for k, d in events if k == "b")
        assert text_a and text_b

        shown = client.get(f"/api/arena/battles/{bid}").json()
        assert shown["votable"] and "model_a" not in shown
        assert shown["conversation_a"][-1]["content"] == text_a

        voted = client.post(
            f"/api/arena/battles/{bid}/vote", json={"winner": "both_bad", "voter": "t"}
        )
        assert voted.status_code == 200, voted.text
        result = voted.json()
        assert {result["model_a"], result["model_b"]} == set(NAMES)
        assert result["winner"] == "tie (bothbad)"
        # blind unless an answer named a model (SmolLM2 sometimes says who it is)
        assert result["rated"] == (find_leak([text_a, text_b], NAMES) is None)

        again = client.post(f"/api/arena/battles/{bid}/vote", json={"winner": "a"})
        assert again.status_code == 409 and "already voted" in again.text
        missing = client.post("/api/arena/battles/nope/vote", json={"winner": "a"})
        assert missing.status_code == 409 and "no arena battle" in missing.text
        bad = client.post(f"/api/arena/battles/{bid}/vote", json={"winner": "left"})
        assert bad.status_code == 400

    stored = BattleStore(db_url).get(bid)
    assert stored.winner == "tie (bothbad)" and stored.voter == "t" and stored.anony


def test_answer_naming_the_model_is_not_rated(server: tuple[str, str]) -> None:
    base, _ = server
    with httpx.Client(base_url=base) as client:
        # greedy SmolLM2-135M-Instruct introduces itself as "a helpful AI named SmolLM"
        body = {"prompt": "Introduce yourself.", "max_tokens": 24, "temperature": 0.0}
        events = _battle(client, "/api/arena/battles", body)
        bid = str(events[0][1]["battle_id"])
        text_a = "".join(str(d["text"]) for k, d in events if k == "a")
        assert "SmolLM" in text_a
        before = client.get("/api/arena/leaderboard").json()
        result = client.post(f"/api/arena/battles/{bid}/vote", json={"winner": "a"}).json()
        assert result["rated"] is False and result["leak"] == "smollm"
        assert client.get("/api/arena/leaderboard").json() == before  # the vote is not counted


def test_vote_before_answers_finish_and_multi_turn(server: tuple[str, str]) -> None:
    base, db_url = server
    store = BattleStore(db_url)
    pending = store.start(NAMES[0], NAMES[1], "unanswered")
    with httpx.Client(base_url=base) as client:
        r = client.post(f"/api/arena/battles/{pending}/vote", json={"winner": "a"})
        assert r.status_code == 409 and "still answering" in r.text

        events = _battle(
            client,
            "/api/arena/battles",
            {"prompt": "Say hi.", "max_tokens": 8, "models": list(NAMES)},
        )
        bid = str(events[0][1]["battle_id"])
        events = _battle(
            client, f"/api/arena/battles/{bid}/turns", {"prompt": "Again.", "max_tokens": 8}
        )
        assert [k for k, _ in events][-1] == "done"
        battle = store.get(bid)
        assert battle.num_turns == 2 and len(battle.conversation_a) == 4
        assert (
            client.post(f"/api/arena/battles/{bid}/vote", json={"winner": "tie"}).status_code == 200
        )
        late = client.post(f"/api/arena/battles/{bid}/turns", json={"prompt": "More."})
        assert late.status_code == 409 and "already voted" in late.text
        assert client.post("/api/arena/battles/nope/turns", json={"prompt": "x"}).status_code == 404

        few = client.post("/api/arena/battles", json={"prompt": "x", "models": [NAMES[0]]})
        assert few.status_code == 400 and "at least two models" in few.text
        unknown = client.post(
            "/api/arena/battles", json={"prompt": "x", "models": ["nope:1b", NAMES[0]]}
        )
        assert unknown.status_code == 404
        board = client.get("/api/arena/leaderboard")
        assert board.status_code == 200 and isinstance(board.json(), list)
