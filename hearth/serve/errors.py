"""The ONE place hearth errors become HTTP answers. `/v1` answers in OpenAI's shape
`{"error": {"message", "type", "param", "code"}}`, everything else in Ollama's
`{"error": "..."}`. Statuses: 400 bad input (naming the parameter), 401 bad key, 403 license
policy (quoting the clause), 404 unknown model (saying how to pull it), 413 body too large,
429 rate limit / 503 queue full (with Retry-After), 5xx for the server's own faults (the
message never carries internals: it names the request id to find in the log).

Streams that already started report errors with `stream_error_payload` in their own
framing. Knows nothing of models or routes."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hearth.errors import (
    AuthError,
    CapacityError,
    ContextLengthError,
    CorruptModelError,
    HearthError,
    InvalidParameterError,
    NotFoundError,
    OptionalDependencyError,
    PolicyError,
    SourceError,
    UserInputError,
)

log = logging.getLogger("hearth.serve")


class RateLimited(CapacityError):
    """A key (or client) sent more requests per minute than allowed: 429, not 503."""


class BodyTooLarge(UserInputError):
    """The request body is over the server's limit: 413."""


@dataclass(frozen=True)
class Problem:
    status: int
    message: str
    type: str
    code: str | None = None
    param: str | None = None
    retry_after: float | None = None

    @property
    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        if self.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return headers


def problem_for(exc: BaseException, request_id: str = "") -> Problem:
    """How `exc` is reported: status, message, OpenAI type / code / param."""
    msg = str(exc)
    if isinstance(exc, ContextLengthError):
        return Problem(400, msg, "invalid_request_error", "context_length_exceeded", "messages")
    if isinstance(exc, InvalidParameterError):
        return Problem(400, msg, "invalid_request_error", "invalid_parameter", exc.param)
    if isinstance(exc, BodyTooLarge):
        return Problem(413, msg, "invalid_request_error", "request_too_large")
    if isinstance(exc, UserInputError):
        return Problem(400, msg, "invalid_request_error", "invalid_request")
    if isinstance(exc, NotFoundError):
        return Problem(404, msg, "invalid_request_error", "model_not_found", "model")
    if isinstance(exc, AuthError):
        return Problem(401, msg, "authentication_error", "invalid_api_key")
    if isinstance(exc, PolicyError):
        parts = [msg]
        if exc.clause and exc.clause not in msg:
            parts.append(f'The license says: "{exc.clause}"')
        if exc.remedy and exc.remedy not in msg:
            parts.append(exc.remedy)
        return Problem(403, " ".join(parts), "permission_error", "license_policy")
    if isinstance(exc, RateLimited):
        return Problem(
            429, msg, "rate_limit_error", "rate_limit_exceeded", retry_after=exc.retry_after or 1
        )
    if isinstance(exc, CapacityError):
        return Problem(503, msg, "server_error", "overloaded", retry_after=exc.retry_after or 1)
    if isinstance(exc, SourceError):
        return Problem(502, msg, "server_error", "source_failed")
    if isinstance(exc, CorruptModelError):
        return Problem(500, msg, "server_error", "corrupt_model")
    if isinstance(exc, OptionalDependencyError):
        return Problem(501, msg, "server_error", "not_installed")
    if isinstance(exc, HearthError):
        return Problem(500, msg, "server_error", "hearth_error")
    if isinstance(exc, RecursionError):  # only a request's own nesting goes this deep
        return Problem(
            400,
            "the request nests too deeply to be processed (e.g. a response_format schema); "
            "flatten it",
            "invalid_request_error",
            "invalid_request",
        )
    return Problem(
        500,
        f"internal server error (request id {request_id or 'unknown'}); the server log has "
        "the details",
        "server_error",
        "internal_error",
    )


def is_openai_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def body_for(problem: Problem, openai: bool) -> dict[str, Any]:
    if openai:
        return {
            "error": {
                "message": problem.message,
                "type": problem.type,
                "param": problem.param,
                "code": problem.code,
            }
        }
    return {"error": problem.message}


def response_for(problem: Problem, path: str) -> JSONResponse:
    return JSONResponse(
        body_for(problem, is_openai_path(path)), problem.status, headers=problem.headers
    )


def stream_error_payload(exc: BaseException, openai: bool, request_id: str = "") -> str:
    """The JSON text of an error inside an already-started stream."""
    if not isinstance(exc, HearthError):
        log.error("request %s failed mid-stream", request_id, exc_info=exc)
    return json.dumps(body_for(problem_for(exc, request_id), openai))


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    parts: list[str] = []
    param: str | None = None
    for err in exc.errors()[:5]:
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        where = ".".join(loc)
        if err.get("type") == "json_invalid":
            return (
                "the request body is not valid JSON "
                f"({err.get('ctx', {}).get('error', 'parse error')}); send a JSON object",
                None,
            )
        if not loc and err.get("type") in ("model_attributes_type", "dict_type"):
            return (
                "the request body is not a JSON object; send one, with "
                "`Content-Type: application/json`",
                None,
            )
        if param is None and where:
            param = where
        text = str(err.get("msg", "invalid value"))
        if err.get("type") == "extra_forbidden":
            text = "unknown field; remove it (see the API reference for the accepted fields)"
        elif err.get("type") == "missing":
            text = "field required"
        parts.append(f"{where or 'body'}: {text}")
    return "invalid request: " + "; ".join(parts), param


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into the surface's shape."""

    def rid(request: Request) -> str:
        return str(getattr(request.state, "request_id", ""))

    async def on_hearth(request: Request, exc: Exception) -> JSONResponse:
        problem = problem_for(exc, rid(request))
        request.state.error = problem.message
        return response_for(problem, request.url.path)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, param = _validation_message(exc)
        problem = Problem(400, message, "invalid_request_error", "invalid_request", param)
        return response_for(problem, request.url.path)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc.__cause__, HearthError):  # e.g. BodyTooLarge while FastAPI read it
            return await on_hearth(request, exc.__cause__)
        status = exc.status_code
        if status == 404:
            text = f"no route {request.method} {request.url.path}; see /docs for the API"
        elif status == 405:
            text = f"{request.method} is not allowed on {request.url.path}"
        else:
            text = str(exc.detail)
        kind = "invalid_request_error" if status < 500 else "server_error"
        return response_for(Problem(status, text, kind), request.url.path)

    async def on_other(request: Request, exc: Exception) -> JSONResponse:
        log.error("request %s failed", rid(request), exc_info=exc)
        return response_for(problem_for(exc, rid(request)), request.url.path)

    app.add_exception_handler(HearthError, on_hearth)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_other)
