"""Every API takes the model's generation defaults for what a request leaves unset: the
Ollama and OpenAI routes sample alike (before, /api/* applied Ollama's values and /v1/*
vLLM's bare ones), and what they use is the engine's own `LLM.default_sampling_params()`."""

from __future__ import annotations

import httpx

MODEL = "smollm2:135m"

QUESTION = [{"role": "user", "content": "Tell me about cats."}]


def test_ollama_and_openai_routes_sample_alike(served) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=served.main.url, timeout=300) as http:
        ollama_text = http.post("/api/generate", json={
            "model": MODEL, "prompt": "Once upon a time", "raw": True, "stream": False,
            "options": {"seed": 7, "num_predict": 24},
        }).json()["response"]
        openai_text = http.post("/v1/completions", json={
            "model": MODEL, "prompt": "Once upon a time", "seed": 7, "max_tokens": 24,
        }).json()["choices"][0]["text"]
        assert ollama_text == openai_text and ollama_text
        ollama_chat = http.post("/api/chat", json={
            "model": MODEL, "messages": QUESTION, "stream": False,
            "options": {"seed": 7, "num_predict": 24},
        }).json()["message"]["content"]
        openai_chat = http.post("/v1/chat/completions", json={
            "model": MODEL, "messages": QUESTION, "seed": 7, "max_tokens": 24,
        }).json()["choices"][0]["message"]["content"]
        assert ollama_chat == openai_chat and ollama_chat


def test_ollama_repetition_window_and_typical_p_options_apply(served) -> None:  # type: ignore[no-untyped-def]
    """repeat_last_n 0 switches repeat_penalty off (Ollama's meaning); a window that covers
    the text makes a strong penalty change the greedy answer; typical_p is accepted."""

    def generate(**options: object) -> str:
        with httpx.Client(base_url=served.main.url, timeout=300) as http:
            body = {"model": MODEL, "prompt": "one two one two one two", "raw": True,
                    "stream": False, "options": {"temperature": 0, "num_predict": 8, **options}}  # fmt: skip
            r = http.post("/api/generate", json=body)
            assert r.status_code == 200, r.text
            return str(r.json()["response"])

    plain = generate()
    assert generate(repeat_penalty=5.0, repeat_last_n=0) == plain
    assert generate(repeat_penalty=5.0, repeat_last_n=64) != plain
    assert generate(typical_p=0.5, seed=1, temperature=1.0)
