"""EngineRequest is checked when built and cannot change after; Usage gives each wire
format's counts from the same numbers."""

from __future__ import annotations

import dataclasses

import pytest

from hearth.engine.sampling_params import SamplingParams
from hearth.serve.engine_request import EngineRequest, Usage


def test_engine_request_needs_a_prompt_and_is_frozen() -> None:
    with pytest.raises(ValueError, match=r"EngineRequest\.prompts"):
        EngineRequest((), SamplingParams())
    request = EngineRequest(((1, 2),), SamplingParams(n=2))
    assert not request.stream and request.tool_format is None and dict(request.headers) == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.stream = True  # type: ignore[misc]


def test_usage_in_each_format() -> None:
    usage = Usage(3, 4, ttft_s=0.1, total_s=2.0, load_s=0.5, prompt_eval_s=0.25, eval_s=1.0)
    assert usage.openai() == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert usage.ollama() == {
        "total_duration": 2_000_000_000,
        "load_duration": 500_000_000,
        "prompt_eval_count": 3,
        "prompt_eval_duration": 250_000_000,
        "eval_count": 4,
        "eval_duration": 1_000_000_000,
    }
