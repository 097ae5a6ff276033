"""Render a model's own chat template (Jinja) into the prompt text the model was trained on.

Templates come from the model file (GGUF `tokenizer.chat_template`, or an HF folder's
`chat_template.jinja` / `tokenizer_config.json`), so they are untrusted code: they run in
Jinja's immutable sandbox, with the environment Hugging Face templates are written for —
`trim_blocks`/`lstrip_blocks`, the `loopcontrols` extension, `{% generation %}` blocks, and the
helpers `raise_exception`, `strftime_now` and a `tojson` that keeps non-ASCII text as is.

Knows nothing of token ids or models: text in, text out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from hearth.errors import UserInputError

__all__ = ["ChatTemplate", "Message"]

Message = dict[str, Any]


class _GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` marks the assistant's part of a conversation for
    training masks; for rendering it is transparent, so its body is emitted unchanged."""

    tags = {"generation"}  # noqa: RUF012 (jinja's Extension API declares it a class attribute)

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(
            lineno
        )

    def _render_body(self, caller: Any) -> str:
        return str(caller())


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own tojson escapes <, >, & and ' for HTML; prompts must keep them.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


# Names clients use for an assistant message's reasoning. Templates read `reasoning_content`
# (Qwen3, DeepSeek-R1) or `thinking` (gpt-oss); fill both from whichever is given, as HF does.
_REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")


def _alias_reasoning(message: Message) -> Message:
    reasoning = next((message[k] for k in _REASONING_KEYS if message.get(k) is not None), None)
    if reasoning is None:
        return message
    return {"thinking": reasoning, **message, "reasoning_content": reasoning}


class ChatTemplate:
    """One compiled chat template. `render` raises UserInputError carrying the template's own
    message when the template rejects the conversation (e.g. roles that do not alternate)."""

    def __init__(self, source: str) -> None:
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[jinja2.ext.loopcontrols, _GenerationBlock],
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        self.source = source
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise UserInputError(
                f"the model's chat template is not valid Jinja (line {exc.lineno}: {exc.message}); "
                "use plain completion (`hearth run MODEL --raw` or /v1/completions) or fix the template"
            ) from exc

    def render(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = True,
        tools: Sequence[dict[str, Any]] | None = None,
        documents: Sequence[dict[str, Any]] | None = None,
        **variables: Any,
    ) -> str:
        """The prompt text for `messages` (dicts with "role" and "content", plus whatever the
        template reads, e.g. "tool_calls"). `variables` are passed to the template as is
        (bos_token, eos_token, enable_thinking, ...)."""
        try:
            return self._template.render(
                messages=[_alias_reasoning(m) for m in messages],
                tools=list(tools) if tools is not None else None,
                documents=list(documents) if documents is not None else None,
                add_generation_prompt=add_generation_prompt,
                **variables,
            )
        except jinja2.TemplateError as exc:
            raise UserInputError(
                f"the model's chat template rejected the conversation: {exc}"
            ) from exc
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            # a template doing `content + '...'` on a message without text, and the like
            raise UserInputError(
                f"the model's chat template failed on this conversation ({type(exc).__name__}: {exc}); "
                "check the messages' roles and contents"
            ) from exc
