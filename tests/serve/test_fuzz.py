"""A bounded schemathesis fuzz of the server's OpenAPI schema (generation, embedding and
lookup routes): no input makes it answer 5xx, and it keeps serving afterwards."""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings

ROUTES = (
    r"^/(v1/(chat/completions|completions|embeddings|models/.*)"
    r"|api/(generate|chat|show|embed|embeddings))$"
)


def test_no_input_gives_a_5xx(served) -> None:  # type: ignore[no-untyped-def]
    raw = httpx.get(served.main.url + "/openapi.json").json()
    schema = schemathesis.openapi.from_dict(raw).include(path_regex=ROUTES)
    seen = []
    for result in schema.get_all_operations():
        operation = result.ok()
        seen.append(operation.path)

        # schemathesis' own pytest plugin does not load under this pytest; drive hypothesis
        @given(case=operation.as_strategy())
        @settings(
            max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(base_url=served.main.url, timeout=60)
            assert response.status_code < 500, (case.path, case.body, response.text[:300])
            if response.status_code >= 400:
                assert "error" in response.json()

        check()
    assert len(seen) >= 8, seen


def test_still_serving_after_the_fuzz(served) -> None:  # type: ignore[no-untyped-def]
    body = {"model": "smollm2:135m", "prompt": "1, 2, 3,", "max_tokens": 2, "temperature": 0}
    r = httpx.post(served.main.url + "/v1/completions", json=body, timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["text"].startswith(" 4")
