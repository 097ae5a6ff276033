"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 (uvicorn, a tiny
transformers model computing echo logprobs): same numbers as computing in-process."""

from __future__ import annotations

from typing import Any

import pytest
from eval_tiny_lm import HFReferenceLM, make_completions_app, serve

from hearth.errors import HearthError, UserInputError
from hearth.eval.backends.openai_backend import OpenAICompletionsLM, OpenAIConfig, completions_url
from hearth.eval.lm import GenerationRequest

REQUESTS = [
    ("Question: What is the capital of France?\nAnswer:", " Paris"),
    ("Question: What is the capital of France?\nAnswer: ", "Lyon is the answer"),  # trailing space moves
    ("Sarah was a much better surgeon than Maria so Maria", " always got the easier cases."),
]


def test_loglikelihood_matches_in_process(completions_server: tuple[str, Any], reference_lm: HFReferenceLM) -> None:
    url, app = completions_server
    with OpenAICompletionsLM(OpenAIConfig(url, "tiny", batch_size=2)) as lm:
        got = lm.loglikelihood(REQUESTS)
    want = reference_lm.loglikelihood(REQUESTS)
    for (g, g_greedy), (w, w_greedy) in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-4)
        assert g_greedy == w_greedy
    last = app.state.requests[-1]
    assert last["echo"] is True and last["logprobs"] == 1 and last["max_tokens"] == 0
    assert isinstance(last["prompt"], list) and len(last["prompt"]) == 1  # 3 prompts, batches of 2


def test_server_requiring_max_tokens_1(tiny_hf_model: Any, tiny_tokenizer: Any, reference_lm: HFReferenceLM) -> None:
    app = make_completions_app(tiny_hf_model, tiny_tokenizer, min_max_tokens=1)
    with serve(app) as url, OpenAICompletionsLM(OpenAIConfig(url, "tiny")) as lm:
        got = lm.loglikelihood(REQUESTS[:2])
    want = reference_lm.loglikelihood(REQUESTS[:2])
    assert [g for g, _ in got] == pytest.approx([w for w, _ in want], abs=1e-4)
    assert [r["max_tokens"] for r in app.state.requests] == [0, 1]


def test_generate_until_cuts_at_stops(completions_server: tuple[str, Any], reference_lm: HFReferenceLM) -> None:
    url, app = completions_server
    reqs = [GenerationRequest("Question: 2+2?\nAnswer:", ("Question:", "e"), 12)]
    with OpenAICompletionsLM(OpenAIConfig(url, "tiny")) as lm:
        assert lm.generate_until(reqs) == reference_lm.generate_until(reqs)
        assert "e" not in lm.generate_until(reqs)[0]
    assert app.state.requests[-1]["stop"] == ["Question:", "e"]


def test_bad_config_and_unreachable_server() -> None:
    assert completions_url("http://h:1") == "http://h:1/v1/completions"
    assert completions_url("http://h:1/v1/") == "http://h:1/v1/completions"
    with pytest.raises(ValueError, match="base_url"):
        OpenAIConfig("localhost:8000", "m")
    with (
        OpenAICompletionsLM(OpenAIConfig("http://127.0.0.1:9", "m", timeout_s=2)) as lm,
        pytest.raises(UserInputError, match="cannot reach"),
    ):
        lm.loglikelihood(REQUESTS[:1])


def test_server_without_completions_is_an_error(tiny_hf_model: Any) -> None:
    from fastapi import FastAPI

    with (
        serve(FastAPI()) as url,
        OpenAICompletionsLM(OpenAIConfig(url, "m")) as lm,
        pytest.raises(HearthError, match="404"),
    ):
        lm.loglikelihood(REQUESTS[:1])
