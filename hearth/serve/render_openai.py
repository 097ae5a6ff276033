"""OpenAI's wire formats for the generation handler's outputs: /v1/chat/completions and
/v1/completions, as one JSON object or Server-Sent Events (chunks, an optional usage chunk,
`data: [DONE]`); logprobs in each endpoint's shape; tool calls parsed out of chat output.
Only shaping: running the request, disconnects and usage notes are handler.py's. Knows
nothing of routes or tensors."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hearth.engine.outputs import CompletionOutput, Logprob, RequestOutput
from hearth.serve.engine_request import Usage
from hearth.serve.errors import stream_error_payload
from hearth.serve.streaming import sse
from hearth.serve.tool_output import (
    OpenAIToolStream,
    finish_reason,
    incomplete_flag,
    incomplete_header,
    openai_message,
)

# decode(token_ids, skip_special_tokens=...) -> text: the model's tokenizer
Decode = Callable[..., str]


def _logprob(lp: Logprob) -> float:
    return max(lp.logprob, -9999.0)  # JSON has no -inf


class _SSE:
    """What the OpenAI formats share: the stream's frame, its error piece and its end."""

    media_type = "text/event-stream"

    def __init__(self, model_name: str, decode: Decode, include_usage: bool) -> None:
        self.model_name, self.decode, self.created = model_name, decode, int(time.time())
        self.include_usage = include_usage

    def _head(self, request_id: str, object_: str) -> dict[str, Any]:
        return {"id": request_id, "object": object_, "created": self.created}

    def _text(self, token_id: int, lp: Logprob | None) -> str:
        return lp.decoded if lp is not None and lp.decoded is not None else self.decode([token_id])

    def error(self, exc: Exception, request_id: str) -> str:
        return sse(stream_error_payload(exc, True, request_id))

    def trailer(self) -> list[str]:
        return [sse("[DONE]")]


class OpenAIChat(_SSE):
    """/v1/chat/completions. `top_logprobs`: alternatives per token when logprobs are on;
    `tool_format`: parse tool calls out of the output (None: the text is the content)."""

    def __init__(
        self,
        model_name: str,
        decode: Decode,
        request_id: str,
        top_logprobs: int = 0,
        tool_format: str | None = None,
        include_usage: bool = False,
    ) -> None:
        super().__init__(model_name, decode, include_usage)
        self.id, self.k, self.tool_format = f"chatcmpl-{request_id}", top_logprobs, tool_format
        self._started: set[int] = set()
        self._parsers: dict[int, OpenAIToolStream] = {}  # one tool-call parser per choice
        self._base: dict[str, Any] = {
            **self._head(self.id, "chat.completion.chunk"),
            "model": model_name,
            "system_fingerprint": None,
        }
        if include_usage:
            self._base["usage"] = None

    def logprobs(self, out: CompletionOutput, start: int) -> dict[str, Any] | None:
        """`choices[].logprobs` for output tokens start.. (None without logprobs)."""
        if out.logprobs is None:
            return None
        content = []
        for pos in range(start, len(out.token_ids)):
            entries, tok = out.logprobs[pos], out.token_ids[pos]
            item = self._entry(tok, entries[tok])
            ranked = sorted(entries.items(), key=lambda kv: kv[1].rank or 0)
            item["top_logprobs"] = [
                self._entry(t, lp) for t, lp in ranked if lp.rank is not None and lp.rank <= self.k
            ]
            content.append(item)
        return {"content": content}

    def _entry(self, token_id: int, lp: Logprob) -> dict[str, Any]:
        text = self._text(token_id, lp)
        return {"token": text, "logprob": _logprob(lp), "bytes": list(text.encode())}

    def whole(
        self, finals: list[RequestOutput], usage: Usage
    ) -> tuple[dict[str, Any], dict[str, str]]:
        choices = []
        for o in finals[0].outputs:
            message = openai_message(o.text, self.tool_format)
            choices.append(
                {
                    "index": o.index,
                    "message": message,
                    "logprobs": self.logprobs(o, 0),
                    "finish_reason": finish_reason(o.finish_reason, "tool_calls" in message),
                    **incomplete_flag(o),
                }
            )
        body = {
            **self._head(self.id, "chat.completion"),
            "model": self.model_name,
            "choices": choices,
            "usage": usage.openai(),
            "system_fingerprint": None,
        }
        return body, incomplete_header(finals[0].outputs)

    def chunks(self, prompt_index: int, out: RequestOutput) -> list[str]:
        pieces = []
        for o in out.outputs:
            if o.index not in self._started:  # a choice opens with the assistant's role
                self._started.add(o.index)
                delta = {"role": "assistant", "content": ""}
                first = {"index": o.index, "logprobs": None, "finish_reason": None, "delta": delta}
                pieces.append(sse({**self._base, "choices": [first]}))
                if self.tool_format is not None:
                    self._parsers[o.index] = OpenAIToolStream(self.tool_format)
            choice = self._delta(o)
            if choice is not None:
                pieces.append(sse({**self._base, "choices": [choice]}))
        return pieces

    def _delta(self, o: CompletionOutput) -> dict[str, Any] | None:
        if not o.delta_text and not o.finished:
            return None
        delta: dict[str, Any] = {}
        reason = o.finish_reason
        parser = self._parsers.get(o.index)
        if parser is None:
            if o.delta_text:
                delta["content"] = o.delta_text
        else:
            content, calls = parser.feed(o.delta_text, o.finished)
            if content:
                delta["content"] = content
            if calls:
                delta["tool_calls"] = calls
            reason = finish_reason(reason, parser.called)
        logprobs = self.logprobs(o, len(o.token_ids) - len(o.delta_token_ids))
        if not delta and not o.finished and logprobs is None:
            return None  # the parser holds this text back (a call may start)
        return {
            "index": o.index,
            "delta": delta,
            "logprobs": logprobs,
            "finish_reason": reason,
            **incomplete_flag(o),
        }

    def end(self, finals: list[RequestOutput | None], usage: Usage) -> list[str]:
        if not self.include_usage or finals[0] is None:
            return []
        return [sse({**self._base, "choices": [], "usage": usage.openai()})]


class OpenAICompletions(_SSE):
    """/v1/completions. Prompt i's completion j is choice i * n + j. `logprobs`: None for
    none, else the alternatives per token; `echo`: the prompt (and its logprobs) before
    the output; `keep_output` False: the prompt only (echo with max_tokens 0)."""

    def __init__(
        self,
        model_name: str,
        decode: Decode,
        request_id: str,
        n: int = 1,
        echo: bool = False,
        logprobs: int | None = None,
        keep_output: bool = True,
        include_usage: bool = False,
    ) -> None:
        super().__init__(model_name, decode, include_usage)
        self.id, self.n, self.echo = f"cmpl-{request_id}", n, echo
        self.k, self.keep_output = logprobs, keep_output
        self._base: dict[str, Any] = {
            **self._head(self.id, "text_completion"),
            "model": model_name,
            "system_fingerprint": None,
        }
        if include_usage:
            self._base["usage"] = None

    def logprobs(self, out: RequestOutput, o: CompletionOutput) -> dict[str, Any]:
        """`choices[].logprobs`: the prompt's tokens first when echoed, then the output's."""
        pairs: list[tuple[int, dict[int, Logprob] | None]] = []
        if self.echo:
            plp = out.prompt_logprobs or [None] * len(out.prompt_token_ids)
            pairs += zip(out.prompt_token_ids, plp, strict=False)
        if self.keep_output and o.logprobs is not None:
            pairs += zip(o.token_ids, o.logprobs, strict=False)
        tokens: list[str] = []
        token_logprobs: list[float | None] = []
        top: list[dict[str, float] | None] = []
        for tok, entries in pairs:
            lp = entries.get(tok) if entries else None
            tokens.append(self._text(tok, lp))
            token_logprobs.append(None if lp is None else _logprob(lp))
            top.append(None if entries is None else self._top(entries))
        offsets, at = [], 0
        for t in tokens:
            offsets.append(at)
            at += len(t)
        return {
            "tokens": tokens,
            "token_logprobs": token_logprobs,
            "top_logprobs": top,
            "text_offset": offsets,
        }

    def _top(self, entries: dict[int, Logprob]) -> dict[str, float]:
        ranked = sorted(entries.items(), key=lambda kv: kv[1].rank or 0)
        k = self.k or 0
        return {
            self._text(t, lp): _logprob(lp)
            for t, lp in ranked
            if lp.rank is not None and lp.rank <= k
        }

    def _choice(self, i: int, out: RequestOutput, o: CompletionOutput) -> dict[str, Any]:
        text = o.text if self.keep_output else ""
        if self.echo:
            prompt = out.prompt
            if prompt is None:
                prompt = self.decode(out.prompt_token_ids, skip_special_tokens=False)
            text = prompt + text
        return {
            "index": i * self.n + o.index,
            "text": text,
            "logprobs": self.logprobs(out, o) if self.k is not None else None,
            "finish_reason": o.finish_reason if self.keep_output else "length",
            **incomplete_flag(o),
        }

    def whole(
        self, finals: list[RequestOutput], usage: Usage
    ) -> tuple[dict[str, Any], dict[str, str]]:
        choices = [self._choice(i, out, o) for i, out in enumerate(finals) for o in out.outputs]
        body = {
            **self._head(self.id, "text_completion"),
            "model": self.model_name,
            "choices": choices,
            "system_fingerprint": None,
            "usage": usage.openai(),
        }
        return body, {}

    def chunks(self, prompt_index: int, out: RequestOutput) -> list[str]:
        pieces = []
        for o in out.outputs:
            if not o.delta_text and not o.finished:
                continue
            choice = {
                "index": prompt_index * self.n + o.index,
                "text": o.delta_text,
                "logprobs": None,
                "finish_reason": o.finish_reason,
            }
            pieces.append(sse({**self._base, "choices": [choice]}))
        return pieces

    def end(self, finals: list[RequestOutput | None], usage: Usage) -> list[str]:
        if not self.include_usage:
            return []
        return [sse({**self._base, "choices": [], "usage": usage.openai()})]
