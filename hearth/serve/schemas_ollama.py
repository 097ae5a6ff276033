"""Request bodies of the Ollama-compatible API (`/api`), as pydantic models. Like Ollama,
unknown fields are ignored; known ones are type-checked (400 naming the field). Also the
Ollama duration syntax for `keep_alive` ("5m", "1h30m", seconds, negative = forever).
Knows nothing of models or the engine."""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hearth.errors import InvalidParameterError

_Name = Field(min_length=1, max_length=200)
# counts beyond this mean "all" anyway; SamplingParams refuses more (top_k 2**63 once
# overflowed inside a step and failed every request batched with it)
MAX_COUNT = 2**31 - 1


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Options(_Lenient):
    # every number is range-checked here (400 naming options.<field>), NaN and inf refused
    temperature: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    top_k: int | None = Field(default=None, ge=-1, le=MAX_COUNT)
    top_p: float | None = Field(default=None, gt=0, le=1)
    min_p: float | None = Field(default=None, ge=0, le=1)
    typical_p: float | None = Field(default=None, gt=0, le=1)
    # hearth's: false (or "off") = no speculative decoding for it; true, "auto" or the
    # model's own mode keep it (generation.build_params)
    speculative: bool | str | None = None
    # -1 (or any negative): until the context is full
    num_predict: int | None = Field(default=None, ge=-MAX_COUNT, le=MAX_COUNT)
    num_ctx: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    stop: list[str] | str | None = None
    repeat_penalty: float | None = Field(default=None, gt=0, le=10)
    # the tokens repeat_penalty looks back over: 0 none, -1 the whole context
    repeat_last_n: int | None = Field(default=None, ge=-1, le=MAX_COUNT)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    # hearth extensions, here so the official clients can send them (`options={...}`)
    regex: str | None = None
    grammar: str | None = None


class _Named(_Lenient):
    """Older clients send `name`, newer `model`: accept either."""

    model: str = _Name

    @model_validator(mode="before")
    @classmethod
    def _name_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "model" not in data and "name" in data:
            data = {**data, "model": data["name"]}
        return data


KeepAlive = str | float | None


class _Generating(_Named):
    options: Options | None = None
    format: str | dict[str, Any] | None = None
    keep_alive: KeepAlive = None
    stream: bool = True
    think: bool | str | None = None
    # hearth extensions: the output matches this regex / follows this Lark or GBNF grammar
    regex: str | None = None
    grammar: str | None = None


class GenerateRequest(_Generating):
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    images: list[str] | None = None


class Message(_Lenient):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_name: str | None = None


class ChatRequest(_Generating):
    messages: list[Message] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None


class EmbedRequest(_Named):
    input: str | list[str] = ""
    truncate: bool = True
    options: Options | None = None
    keep_alive: KeepAlive = None
    dimensions: int | None = Field(default=None, ge=1, le=MAX_COUNT)


class EmbeddingsRequest(_Named):
    prompt: str = ""
    options: Options | None = None
    keep_alive: KeepAlive = None


class ShowRequest(_Named):
    verbose: bool = False


class PullRequest(_Named):
    insecure: bool = False
    stream: bool = True


class DeleteRequest(_Named):
    pass


class CopyRequest(_Lenient):
    source: str = _Name
    destination: str = _Name


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


# longest keep_alive taken (a century): beyond it, dates overflow; -1 means "never unload"
MAX_KEEP_ALIVE_S = 100 * 365 * 24 * 3600.0


def parse_keep_alive(value: KeepAlive) -> float | None:
    """Seconds, or None when not given. Numbers are seconds; strings are Go durations
    ("5m", "1h30m", "300ms") or plain numbers; negative means never unload. NaN, infinities
    and durations over a century are refused (InvalidParameterError)."""
    if value is None:
        return None
    seconds = _keep_alive_seconds(value)
    if not math.isfinite(seconds) or seconds > MAX_KEEP_ALIVE_S:
        raise InvalidParameterError(
            "keep_alive",
            f"keep_alive: {value!r} is not a usable duration; give seconds or a duration up "
            "to a century ('5m', '24h'), 0 to unload at once, or -1 to keep the model loaded",
        )
    return seconds


def _keep_alive_seconds(value: str | float) -> float:
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    parts = _PART.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body:
        raise InvalidParameterError(
            "keep_alive",
            f"keep_alive: {value!r} is not a duration; use seconds (300), a duration like "
            "'5m' or '1h30m', 0 to unload at once, or -1 to keep the model loaded",
        )
    return sign * sum(float(n) * _UNITS[u] for n, u in parts)


class CreateRequest(_Lenient):
    """Ollama's /api/create: the JSON form (`from`, `system`, `template`, `parameters`,
    `messages`, `license`, `files`/`adapters` as uploaded blob digests) or the legacy
    `modelfile` text; the JSON fields win over the Modelfile's."""

    model: str = _Name
    from_: str | None = Field(default=None, alias="from")
    modelfile: str | None = None
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    template: str | None = None
    system: str | None = None
    license: str | list[str] | None = None
    parameters: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None
    quantize: str | None = None
    stream: bool = True
