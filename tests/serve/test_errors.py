"""The one place errors become HTTP answers (hearth.serve.errors): the status, OpenAI type
/ code / param of each error of the tree, both body shapes, the headers, internals never
shown, and the handlers installed on a real FastAPI app."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from hearth.errors import (
    AuthError,
    CapacityError,
    ContextLengthError,
    CorruptModelError,
    HearthError,
    InvalidParameterError,
    ModelNotFoundError,
    OptionalDependencyError,
    PolicyError,
    SourceError,
    UserInputError,
)
from hearth.serve.errors import (
    BodyTooLarge,
    RateLimited,
    body_for,
    install,
    problem_for,
    stream_error_payload,
)


@pytest.mark.parametrize(
    ("exc", "status", "code", "param"),
    [
        (ContextLengthError(900, 512), 400, "context_length_exceeded", "messages"),
        (InvalidParameterError("top_k", "top_k must be >= 0"), 400, "invalid_parameter", "top_k"),
        (BodyTooLarge("too big"), 413, "request_too_large", None),
        (UserInputError("bad"), 400, "invalid_request", None),
        (ModelNotFoundError("x"), 404, "model_not_found", "model"),
        (AuthError("no key"), 401, "invalid_api_key", None),
        (RateLimited("slow down", retry_after=2.2), 429, "rate_limit_exceeded", None),
        (CapacityError("queue full"), 503, "overloaded", None),
        (SourceError("pypi down"), 502, "source_failed", None),
        (CorruptModelError("truncated"), 500, "corrupt_model", None),
        (OptionalDependencyError("pip install x"), 501, "not_installed", None),
        (HearthError("odd"), 500, "hearth_error", None),
    ],
)
def test_each_error_of_the_tree_has_its_status(
    exc: HearthError, status: int, code: str, param: str | None
) -> None:
    problem = problem_for(exc, "req-1")
    assert (problem.status, problem.code, problem.param) == (status, code, param)
    assert problem.message == str(exc)


def test_retry_after_and_authenticate_headers() -> None:
    assert problem_for(RateLimited("x", retry_after=2.2)).headers == {"Retry-After": "3"}
    assert problem_for(CapacityError("x")).headers == {"Retry-After": "1"}
    assert problem_for(AuthError("x")).headers == {"WWW-Authenticate": "Bearer"}
    assert problem_for(UserInputError("x")).headers == {}


def test_policy_refusal_quotes_the_clause_and_the_remedy() -> None:
    exc = PolicyError("commercial use is not allowed")
    exc.clause, exc.remedy = "non-commercial purposes only", "hearth policy set commercial false"
    problem = problem_for(exc)
    assert problem.status == 403 and problem.code == "license_policy"
    assert '"non-commercial purposes only"' in problem.message
    assert problem.message.endswith("hearth policy set commercial false")


def test_an_internal_error_shows_the_request_id_not_the_internals() -> None:
    problem = problem_for(KeyError("/secret/path"), "req-42")
    assert problem.status == 500 and "/secret/path" not in problem.message
    assert "req-42" in problem.message


def test_both_body_shapes_and_stream_payloads() -> None:
    problem = problem_for(InvalidParameterError("n", "n must be >= 1"))
    assert body_for(problem, openai=True) == {
        "error": {
            "message": "n must be >= 1",
            "type": "invalid_request_error",
            "param": "n",
            "code": "invalid_parameter",
        }
    }
    assert body_for(problem, openai=False) == {"error": "n must be >= 1"}
    ollama = json.loads(stream_error_payload(UserInputError("bad"), openai=False))
    assert ollama == {"error": "bad"}
    hidden = json.loads(stream_error_payload(RuntimeError("boom"), openai=True, request_id="r9"))
    assert "boom" not in hidden["error"]["message"] and "r9" in hidden["error"]["message"]


class _Body(BaseModel):
    n: int


def _app() -> FastAPI:
    app = FastAPI()
    install(app)

    @app.post("/v1/thing")
    def v1_thing(body: _Body) -> dict[str, int]:
        raise InvalidParameterError("n", f"n must be >= 1, got {body.n}")

    @app.post("/api/thing")
    def api_thing(body: _Body) -> dict[str, int]:
        raise RuntimeError("internal detail")

    return app


def test_installed_handlers_answer_in_each_surface_shape() -> None:
    client = TestClient(_app(), raise_server_exceptions=False)
    r = client.post("/v1/thing", json={"n": 0})
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"
    r = client.post("/v1/thing", json={"n": "x"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"
    assert r.json()["error"]["message"].startswith("invalid request: n:")
    r = client.post("/v1/thing", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = client.post("/api/thing", json={"n": 1})
    assert r.status_code == 500 and "internal detail" not in r.json()["error"]
    r = client.get("/api/nothing")
    assert r.status_code == 404 and r.json() == {"error": "no route GET /api/nothing; see /docs for the API"}
    r = client.get("/v1/thing")
    assert r.status_code == 405 and "GET is not allowed" in r.json()["error"]["message"]
