"""Request bodies of the OpenAI-compatible API (`/v1`), as pydantic models. Like OpenAI's
own server, unknown top-level fields are refused (400 naming the field); parameters OpenAI
accepts that do not change what a local model does (`store`, `metadata`, `service_tier`,
...) are accepted and ignored. Responses are plain dicts built by the routes. Knows nothing
of models or the engine."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

INT64 = 2**63
# counts beyond this mean "all" anyway; SamplingParams refuses more (top_k 2**63 once
# overflowed inside a step and failed every request batched with it)
MAX_COUNT = 2**31 - 1
# OpenAI accepts at most 300 logit_bias entries; each step applies them to every row
MAX_LOGIT_BIAS = 300
Bias = Annotated[float, Field(ge=-100, le=100)]

ModelId = Field(min_length=1, max_length=200, description="a model name from /v1/models")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Lenient):
    type: Literal["text", "image_url", "input_audio", "file", "refusal"]
    text: str | None = None
    refusal: str | None = None
    image_url: dict[str, Any] | None = None


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=256)
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(_Lenient):
    include_usage: bool = False


class _Sampling(_Strict):
    model: str = ModelId
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, Bias] | None = Field(default=None, max_length=MAX_LOGIT_BIAS)
    n: int | None = Field(default=None, ge=1, le=16)
    seed: int | None = Field(default=None, ge=-INT64, lt=INT64)
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    user: str | None = Field(default=None, max_length=256)
    # vLLM's extras, so clients written for vLLM work too
    top_k: int | None = Field(default=None, ge=-1, le=MAX_COUNT)
    min_p: float | None = Field(default=None, ge=0, le=1)
    repetition_penalty: float | None = Field(default=None, gt=0, le=10)
    # hearth's extension: false (or "off") turns the server's speculative decoding off for
    # this request; true, "auto" or the model's own mode keep it (generation.build_params)
    speculative: bool | str | None = None
    # accepted by OpenAI; nothing to do for a local model
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    # hearth extensions (OpenAI clients: `extra_body={"regex": ...}`): the whole output
    # matches this regex / is derived from this Lark or GBNF grammar
    regex: str | None = None
    grammar: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None
    modalities: list[Literal["text"]] | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    # 0 with echo=True scores the prompt without generating (lm-eval's loglikelihood)
    max_tokens: int | None = Field(default=16, ge=0, le=MAX_COUNT)
    echo: bool | None = False
    logprobs: int | None = Field(default=None, ge=0, le=20)
    best_of: int | None = Field(default=None, ge=1, le=16)
    suffix: str | None = None
    # as on chat/completions (vLLM accepts response_format here too)
    response_format: dict[str, Any] | None = None
    regex: str | None = None
    grammar: str | None = None


class EmbeddingRequest(_Strict):
    model: str = ModelId
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    user: str | None = Field(default=None, max_length=256)
    # hearth's (as Ollama's): cut an input over the model's limit instead of refusing it
    truncate: bool = False


class RerankRequest(_Lenient):
    """The Jina / Cohere rerank body that llama.cpp and vLLM accept."""

    model: str = ModelId
    query: str = Field(min_length=1)
    # strings, or {"text": ...} objects (Cohere's older form)
    documents: list[str | dict[str, Any]]
    top_n: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    return_documents: bool = True
    truncate: bool = False
