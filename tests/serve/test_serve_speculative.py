"""A server started with `speculative="auto"` speculates on a quoting request and says so:
OpenAI's usage.completion_tokens_details (predicted-output counters), Ollama's
draft_n / draft_n_accepted (llama.cpp's names), and the /metrics counters; a request's
`speculative: false` turns it off for that request alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from openai import OpenAI

from hearth.config import load_settings
from hearth.serve.app import create_app
from hearth.serve.options import ServeOptions

MODEL = "smollm2:135m"
TEXT = (
    "The old lighthouse stood at the edge of the cliff for more than two hundred years. "
    "Every night its keeper climbed the narrow stairs, one hundred and twelve steps, to "
    "light the lamp that warned ships away from the rocks below."
)
QUOTE = [{"role": "user", "content": "Repeat this text word for word:\n\n" + TEXT}]


@pytest.mark.slow  # a second SmolLM2 server
def test_speculating_server_reports_drafts(
    tmp_path: Path, smollm2_gguf: Path, start_app: Callable[[FastAPI], object]
) -> None:
    from hearth.store import Store

    settings = load_settings({"HEARTH_HOME": str(tmp_path / "home")})
    Store(settings).import_path(smollm2_gguf, MODEL)
    options = ServeOptions(port=0, kv_cache_gb=0.1, max_model_len=1024, speculative="auto")
    url = start_app(create_app(settings, options, preload=[MODEL])).url  # type: ignore[attr-defined]
    client = OpenAI(base_url=url + "/v1", api_key="none")
    answer = client.chat.completions.create(
        model=MODEL,
        messages=QUOTE,
        max_tokens=40,
        temperature=0,  # type: ignore[arg-type]
    )
    details = answer.usage.completion_tokens_details  # type: ignore[union-attr]
    assert details is not None and details.accepted_prediction_tokens
    with httpx.Client(base_url=url, timeout=300) as http:
        body = http.post(
            "/api/chat",
            json={
                "model": MODEL,
                "messages": QUOTE,
                "stream": False,
                "options": {"temperature": 0, "num_predict": 40},
            },
        ).json()
        assert body["draft_n"] >= body["draft_n_accepted"] > 0
        # the same greedy answer either way
        assert body["message"]["content"] == answer.choices[0].message.content
        # the per-request override: no drafts for this one, the same answer
        off = http.post(
            "/api/chat",
            json={
                "model": MODEL,
                "messages": QUOTE,
                "stream": False,
                "options": {"temperature": 0, "num_predict": 40, "speculative": False},
            },
        ).json()
        assert "draft_n" not in off and off["message"]["content"] == body["message"]["content"]
        plain = client.chat.completions.create(
            model=MODEL,
            messages=QUOTE,
            max_tokens=40,
            temperature=0,  # type: ignore[arg-type]
            extra_body={"speculative": False},
        )
        assert plain.usage is not None and plain.usage.completion_tokens_details is None
        metrics = http.get("/metrics").text
    accepted = [
        line
        for line in metrics.splitlines()
        if line.startswith("hearth_spec_accepted_tokens_total")
    ]
    assert accepted and float(accepted[0].split()[-1]) > 0


@pytest.mark.slow  # a SmolLM2 server drafting with itself, and a refused Gemma 3 draft
def test_draft_model_server_and_refused_draft(
    tmp_path: Path,
    smollm2_gguf: Path,
    gemma3_gguf: Path,
    start_app: Callable[[FastAPI], object],
) -> None:
    from hearth.store import Store

    settings = load_settings({"HEARTH_HOME": str(tmp_path / "home")})
    Store(settings).import_path(smollm2_gguf, MODEL)
    options = ServeOptions(
        port=0, kv_cache_gb=0.1, max_model_len=1024, speculative="draft",
        draft_model=str(smollm2_gguf),
    )  # fmt: skip
    url = start_app(create_app(settings, options)).url  # type: ignore[attr-defined]
    chat = {"model": MODEL, "messages": QUOTE, "stream": False}
    greedy = {"temperature": 0, "num_predict": 24}
    with httpx.Client(base_url=url, timeout=300) as http:
        body = http.post("/api/chat", json={**chat, "options": greedy}).json()
        assert body["draft_n_accepted"] > 0
        # the per-request override takes the modes: "off" (no drafts), the model's own
        off = http.post("/api/chat", json={**chat, "options": {**greedy, "speculative": "off"}})
        assert "draft_n" not in off.json()
        assert off.json()["message"]["content"] == body["message"]["content"]
        same = http.post("/api/chat", json={**chat, "options": {**greedy, "speculative": "draft"}})
        # (whether it drafts is the policy's call: drafting with a same-size model does not pay)
        assert same.status_code == 200
        assert same.json()["message"]["content"] == body["message"]["content"]
        other = http.post("/api/chat", json={**chat, "options": {**greedy, "speculative": "self"}})
        assert other.status_code == 400 and "runs 'draft'" in other.text
    refusing = ServeOptions(
        port=0, kv_cache_gb=0.1, max_model_len=1024, speculative="draft",
        draft_model=str(gemma3_gguf),
    )  # fmt: skip
    url = start_app(create_app(settings, refusing)).url  # type: ignore[attr-defined]
    with httpx.Client(base_url=url, timeout=300) as http:
        refused = http.post("/api/chat", json={**chat, "options": greedy})
        assert refused.status_code == 400, refused.text
        assert f"{gemma3_gguf} cannot draft for {MODEL}" in refused.text
        assert http.get("/api/tags").status_code == 200  # still serving
