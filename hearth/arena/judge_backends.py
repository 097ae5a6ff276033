"""What answers and what judges: a local model through the engine (`LocalModel`, greedy,
so runs repeat), or any OpenAI-compatible chat server (`OpenAIJudge`, for a judge stronger
than what runs here). Talks to the engine or to HTTP; knows nothing of prompts."""

from __future__ import annotations

from typing import Any

import httpx

from hearth.arena.battles import Message
from hearth.engine.sampling_params import SamplingParams
from hearth.errors import SourceError


class LocalModel:
    """A store model loaded in this process (hearth.engine.llm.LLM)."""

    def __init__(self, llm: Any, name: str, max_tokens: int) -> None:
        self.llm = llm
        self.name = name
        self.max_tokens = max_tokens

    def _chat(self, conversations: list[list[Message]]) -> list[str]:
        params = SamplingParams(temperature=0.0, max_tokens=self.max_tokens)
        outputs = self.llm.chat([list(c) for c in conversations], params)
        return [o.outputs[0].text.strip() for o in outputs]

    def answer(self, conversations: list[list[Message]]) -> list[str]:
        return self._chat(conversations)

    def judge(self, system: str, user: str) -> str:
        return self._chat(
            [[{"role": "system", "content": system}, {"role": "user", "content": user}]]
        )[0]


class OpenAIJudge:
    """A judge behind an OpenAI-compatible `/chat/completions` (base URL ending in /v1)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 max_tokens: int = 2048, timeout_s: float = 300.0) -> None:  # fmt: skip
        self.name = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.max_tokens = max_tokens
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(headers=headers, timeout=timeout_s)

    def judge(self, system: str, user: str) -> str:
        body = {
            "model": self.name,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": 0.0,
            "max_tokens": self.max_tokens,
        }
        try:
            response = self.client.post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise SourceError(f"the judge at {self.url} did not answer: {exc}") from exc
        if response.status_code != 200:
            raise SourceError(
                f"the judge at {self.url} answered {response.status_code}: {response.text[:200]}"
            )
        try:
            return str(response.json()["choices"][0]["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise SourceError(f"the judge at {self.url} sent no chat completion") from exc

    def close(self) -> None:
        self.client.close()
