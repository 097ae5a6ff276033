"""Ollama's wire formats for the generation handler's outputs: /api/generate and /api/chat,
as one JSON object or NDJSON lines (`done: false` pieces, then a final object with the
done reason, counts and durations); chat tool calls as `message.tool_calls`. Only shaping:
running the request, disconnects and usage notes are handler.py's. Knows nothing of routes
or tensors."""

from __future__ import annotations

import json
from typing import Any

from hearth.engine.outputs import RequestOutput
from hearth.serve.engine_request import Usage
from hearth.serve.errors import stream_error_payload
from hearth.serve.ollama_models import now_iso
from hearth.serve.tool_output import OllamaToolStream, incomplete_flag, ollama_message

NDJSON = "application/x-ndjson"


class _NDJSON:
    """What the Ollama formats share: one answer's first completion, its final fields, the
    line format. A subclass says how text goes in an object (`_whole_fields`,
    `_delta_fields`) and what else the final object holds (`_extra`)."""

    media_type = NDJSON

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name

    def _head(self) -> dict[str, Any]:
        return {"model": self.model_name, "created_at": now_iso()}

    def _done(self, final: RequestOutput | None, usage: Usage) -> dict[str, Any]:
        first = final.outputs[0] if final is not None else None
        return {
            "done": True,
            "done_reason": first.finish_reason if first is not None else "stop",
            **usage.ollama(),
            **(incomplete_flag(first) if first is not None else {}),
        }

    def _whole_fields(self, text: str) -> dict[str, Any]:
        raise NotImplementedError

    def _delta_fields(self, delta: str, finished: bool) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _extra(self, final: RequestOutput | None) -> dict[str, Any]:
        return {}

    def whole(
        self, finals: list[RequestOutput], usage: Usage
    ) -> tuple[dict[str, Any], dict[str, str]]:
        final = finals[0]
        fields = self._whole_fields(final.outputs[0].text)
        return {**self._head(), **fields, **self._done(final, usage), **self._extra(final)}, {}

    def chunks(self, prompt_index: int, out: RequestOutput) -> list[str]:
        fields = self._delta_fields(out.outputs[0].delta_text, out.finished)
        return [json.dumps({**self._head(), **f, "done": False}) + "\n" for f in fields]

    def end(self, finals: list[RequestOutput | None], usage: Usage) -> list[str]:
        final = finals[0]
        empty = self._whole_fields("")  # the text came in the pieces before
        last = {**self._head(), **empty, **self._done(final, usage), **self._extra(final)}
        return [json.dumps(last) + "\n"]

    def error(self, exc: Exception, request_id: str) -> str:
        return stream_error_payload(exc, False, request_id) + "\n"

    def trailer(self) -> list[str]:
        return []


class OllamaGenerate(_NDJSON):
    """/api/generate: text in `response`; the final object carries `context` (the prompt's
    and the answer's token ids, for the next request)."""

    def _whole_fields(self, text: str) -> dict[str, Any]:
        return {"response": text}

    def _delta_fields(self, delta: str, finished: bool) -> list[dict[str, Any]]:
        return [{"response": delta}] if delta else []

    def _extra(self, final: RequestOutput | None) -> dict[str, Any]:
        if final is None:
            return {}
        return {"context": list(final.prompt_token_ids) + list(final.outputs[0].token_ids)}


class OllamaChat(_NDJSON):
    """/api/chat: text in `message.content`; with a tool format, calls parsed out into
    `message.tool_calls` (each sent whole once the model has finished writing it)."""

    def __init__(self, model_name: str, tool_format: str | None = None) -> None:
        super().__init__(model_name)
        self.tool_format = tool_format
        self._parser = OllamaToolStream(tool_format) if tool_format is not None else None

    def _whole_fields(self, text: str) -> dict[str, Any]:
        return {"message": ollama_message(text, self.tool_format)}

    def _delta_fields(self, delta: str, finished: bool) -> list[dict[str, Any]]:
        if self._parser is None:
            return [{"message": {"role": "assistant", "content": delta}}] if delta else []
        content, calls = self._parser.feed(delta, finished)
        if not content and not calls:
            return []
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        return [{"message": message}]
