"""The Modelfile parser: every directive, quoting, and the line-numbered refusals."""

from __future__ import annotations

import pytest

from hearth.errors import UserInputError
from hearth.store.modelfile import DIRECTIVES, PARAMETERS, Modelfile, parse

FULL = '''# a comment
FROM smollm2:135m
adapter ./my-adapter
DRAFT smollm2:135m-draft
TEMPLATE """{{ if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}<|im_start|>user
{{ .Prompt }}<|im_end|>
<|im_start|>assistant
"""
SYSTEM "You are \\"terse\\"."
PARAMETER temperature 0.3
PARAMETER top_k 20
PARAMETER num_ctx 512
PARAMETER stop <|im_end|>
PARAMETER stop "two words"
PARAMETER seed 7
MESSAGE user Hi
MESSAGE assistant """Hello
there"""
LICENSE """MIT, see the card"""
'''


def test_every_directive() -> None:
    mf = parse(FULL)
    assert mf.from_ == "smollm2:135m"
    assert mf.adapters == ["./my-adapter"]
    assert mf.draft == "smollm2:135m-draft"
    assert mf.template is not None and mf.template.startswith("{{ if .System }}")
    assert mf.template.endswith("assistant\n")
    assert mf.system == 'You are "terse".'
    assert mf.parameters == {
        "temperature": 0.3,
        "top_k": 20,
        "num_ctx": 512,
        "stop": ["<|im_end|>", "two words"],
        "seed": 7,
    }
    assert mf.messages == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello\nthere"},
    ]
    assert mf.licenses == ["MIT, see the card"]


def test_render_parses_back() -> None:
    mf = parse(FULL)
    assert parse(mf.render()) == mf
    tricky = Modelfile(
        from_="x",
        system=' lead and "quotes" ',
        messages=[{"role": "user", "content": 'ends with a quote"'}],
        licenses=["", "a\\b"],
    )
    assert parse(tricky.render()) == tricky


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("FROM x\nDRAFT", "line 2: DRAFT needs a model name or a path"),
        ("FROM x\nFOO bar", "line 2: unknown directive 'FOO'; allowed: " + ", ".join(DIRECTIVES)),
        ("FROM x\n\nPARAMETER temperature hot", "line 3: parameter temperature must be a number"),
        ("FROM x\nPARAMETER top_k 1.5", "line 2: parameter top_k must be an integer"),
        (
            "FROM x\nPARAMETER nope 1",
            "line 2: unknown parameter 'nope'; allowed: " + ", ".join(PARAMETERS),
        ),
        ("FROM x\nPARAMETER temperature", "line 2: PARAMETER needs two values"),
        ("FROM x\nMESSAGE robot hi", "line 2: MESSAGE role 'robot' is not one of"),
        ("SYSTEM hi", "no FROM line"),
        ('FROM x\nSYSTEM """never closed', 'line 2: the """ opened here never closes'),
    ],
)
def test_refusals_name_the_line(text: str, needle: str) -> None:
    with pytest.raises(UserInputError) as info:
        parse(text)
    assert needle in str(info.value)
