"""`hearth serve --replicas 2` end to end: hearth's app in front of two SmolLM2 replicas on
a local Ray (tests/serve/replicas/conftest.py), driven by the official `openai` client."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from openai import OpenAI

from tests.serve.conftest import MODEL, Listener

# long enough for several 16-token KV blocks: requests that share them share a replica
PIRATE = "You are a pirate captain. Answer every question as a pirate would, with salt. " * 3
POET = "You are a careful poet. Answer every question in four short rhyming lines. " * 3


def _stream(client: OpenAI, system: str, user: str) -> tuple[str, str]:
    """(replica, text) of one streamed chat."""
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        max_tokens=6,
        temperature=0,
        stream=True,
    )
    replica = raw.headers["x-hearth-replica"]
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    return replica, text


def test_openai_streams_from_both_replicas_and_a_prefix_sticks(
    replicas_server: Listener,
) -> None:
    client = OpenAI(base_url=replicas_server.url + "/v1", api_key="unused", max_retries=0)
    first, text = _stream(client, PIRATE, "Where is the treasure?")
    assert text.strip()
    # a new prefix goes to the replica that holds no cache yet: the other one
    other, text = _stream(client, POET, "What is the sea?")
    assert text.strip() and other != first
    for question in ("How old is your ship?", "Do you like rum?", "Who is your parrot?"):
        assert _stream(client, PIRATE, question)[0] == first
    assert _stream(client, POET, "And the sky?")[0] == other
    metrics = httpx.get(replicas_server.url + "/metrics", timeout=30).text
    for replica in (first, other):
        assert f'hearth_replica_generation_tokens{{model="{MODEL}",replica="{replica}"}}' in metrics
    assert f'hearth_replicas{{model="{MODEL}"}} 2.0' in metrics


def _replica_actor(replica: str):  # type: ignore[no-untyped-def]
    import ray

    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith("SERVE_REPLICA::") and actor["name"].endswith("#" + replica):
            return ray.get_actor(actor["name"], namespace=actor["namespace"])
    raise AssertionError(f"no actor for replica {replica}")


def _running_replicas() -> int:
    from ray import serve

    app = serve.status().applications[f"hearth-{MODEL.replace(':', '-')}"]
    return int(app.deployments["engine"].replica_states.get("RUNNING", 0))


@pytest.mark.slow
def test_a_killed_replica_fails_its_requests_with_503_and_comes_back(
    replicas_server: Listener,
) -> None:
    import ray

    client = OpenAI(base_url=replicas_server.url + "/v1", api_key="unused", max_retries=0)
    doomed, _ = _stream(client, PIRATE, "Hello?")
    survivor, _ = _stream(client, POET, "Hello?")
    assert doomed != survivor
    answers: list[httpx.Response] = []

    def long_pirate_answer() -> None:
        body = {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": PIRATE},
                {"role": "user", "content": "Tell me your whole life story."},
            ],
            "max_tokens": 800,
            "logit_bias": {"0": -100, "2": -100},  # no end of text: it runs until killed
        }
        url = replicas_server.url + "/v1/chat/completions"
        answers.append(httpx.post(url, json=body, timeout=120))

    worker = threading.Thread(target=long_pirate_answer)
    worker.start()
    time.sleep(3)  # well into its decode on `doomed`
    ray.kill(_replica_actor(doomed), no_restart=False)
    worker.join(timeout=120)
    (answer,) = answers
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["retry-after"]) >= 1 and "retry" in answer.json()["error"]["message"]
    # the other replica answers meanwhile, and Ray Serve brings a second one back
    assert _stream(client, POET, "Still there?")[0] == survivor
    deadline = time.monotonic() + 120
    while _running_replicas() < 2 and time.monotonic() < deadline:
        time.sleep(1)
    assert _running_replicas() == 2
    assert httpx.get(replicas_server.url + "/health", timeout=10).status_code == 200


def test_the_address_check_knows_a_real_ray(local_ray: None) -> None:
    import ray

    from hearth.ray_address import check_reachable

    check_reachable(ray.get_runtime_context().gcs_address, timeout_s=5)  # no error
