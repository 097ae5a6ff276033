"""/api/library through the real server: each model's facts, whether it is loaded and
the context it was given, its license badge under the current policy (a policy that
denies the license turns "commercial OK" into "not allowed"), the model card."""

from __future__ import annotations

import httpx

from hearth.licenses import Policy, load_policy, save_policy

MODEL = "smollm2:135m"


def test_badges_follow_the_policy(served) -> None:  # type: ignore[no-untyped-def]
    url = f"{served.main.url}/api/library"
    (model,) = [m for m in httpx.get(url).json()["models"] if m["name"] == MODEL]
    assert (model["badge"], model["label"], model["license_id"]) == (
        "ok",
        "commercial OK",
        "apache-2.0",
    )
    assert model["loaded"] and model["serving_context_length"] == 1024
    before = load_policy(served.settings)
    try:
        save_policy(served.settings, Policy(deny=("apache-2.0",)))
        library = httpx.get(url).json()
        (model,) = [m for m in library["models"] if m["name"] == MODEL]
        assert (model["badge"], model["label"]) == ("no", "not allowed")
        assert "denies the license apache-2.0" in model["why"]
        assert library["policy"]["deny"] == ["apache-2.0"]
    finally:
        save_policy(served.settings, before)
    card = httpx.get(f"{url}/card/{MODEL}").json()
    assert card["license"]["id"] == "apache-2.0" and card["template"]
    assert {s["source"] for s in card["license_signals"]} >= {"gguf"}
    assert httpx.get(f"{url}/card/nope:1").status_code == 404
