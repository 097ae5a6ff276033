"""Ollama Go templates translated to Jinja render what Go renders; the rest is refused."""

from __future__ import annotations

import pytest

from hearth.errors import UserInputError
from hearth.store.go_template import to_jinja
from hearth.tokenizer.chat_template import ChatTemplate

MESSAGES = [
    {"role": "system", "content": "S"},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "yo"},
    {"role": "user", "content": "q2"},
]
CHATML = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\n"


def _render(go: str) -> str:
    return ChatTemplate(to_jinja(go)).render(MESSAGES, add_generation_prompt=True)


def test_legacy_prompt_response_template_repeats_per_turn() -> None:
    go = (
        "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
        "<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n{{ .Response }}"
        "<|im_end|>\n"
    )
    assert _render(go) == CHATML


def test_messages_range_with_variables_and_trimming() -> None:
    go = (
        '{{- range $i, $m := .Messages }}\n  {{- if eq $m.Role "system" "user" }}'
        "<|im_start|>{{ $m.Role }}\n{{ .Content }}<|im_end|>\n"
        "{{- else }}<|im_start|>assistant\n{{ .Content }}<|im_end|>\n{{- end }}\n"
        "{{ end }}<|im_start|>assistant\n"
    )
    assert _render(go) == CHATML


def test_system_and_not_and_or() -> None:
    go = '{{ if and $.System (not (eq .Prompt "x")) }}A{{ else if or .Prompt .Response }}B{{ end }}'
    # a one-turn template renders per user turn; .System only on the first (as Ollama does)
    assert _render(go) == "AB"


def test_jinja_is_kept() -> None:
    jinja = "{% for m in messages %}{{ m.content }}{% endfor %}"
    assert to_jinja(jinja) == jinja


@pytest.mark.parametrize(
    ("go", "needle"),
    [
        ("{{ .Tools }}", "`.Tools` cannot be translated"),
        ("{{ range .Tools }}x{{ end }}", "only `range .Messages`"),
        ("{{ if .System }}x", "never closed"),
        ("{{ with .System }}x{{ end }}", "`with` cannot be translated"),
        ("{{ json .Prompt }}", "`json` cannot be translated"),
        ("x{{ end }}", "without an opening"),
    ],
)
def test_untranslatable_is_refused_by_name(go: str, needle: str) -> None:
    with pytest.raises(UserInputError) as info:
        to_jinja(go)
    assert needle in str(info.value)
