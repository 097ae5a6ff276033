from __future__ import annotations

import pytest

from hearth.errors import InvalidNameError
from hearth.store.names import MAX_NAME_LENGTH, ModelName


def test_default_tag_and_case_folding() -> None:
    assert str(ModelName.parse("smollm2")) == "smollm2:latest"
    assert ModelName.parse("SmolLM2:135M") == ModelName("smollm2", "135m")
    assert ModelName.parse("qwen2.5_x-y:1.5b-q4") == ModelName("qwen2.5_x-y", "1.5b-q4")


@pytest.mark.parametrize(
    "bad",
    [
        "org/model",
        "../etc",
        "a..b",
        "my model",
        "x" * 300,
        "",
        ":tag",
        "name:",
        "a:b:c",
        "-x",
        "a\\b",
    ],
)
def test_bad_names_are_rejected_with_the_rule(bad: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        ModelName.parse(bad)
    message = str(info.value)
    assert "lowercase letters, digits" in message
    assert f"at most {MAX_NAME_LENGTH} characters" in message


def test_derive_makes_a_valid_name_from_free_text() -> None:
    assert ModelName.derive("SmolLM2-135M-Instruct.Q4_1") == ModelName("smollm2-135m-instruct.q4_1")
    assert ModelName.derive("My Model (v2)!").name == "my-model-v2"
    assert ModelName.derive("a..b").name == "a.b"
    assert len(str(ModelName.derive("y" * 500))) <= MAX_NAME_LENGTH
    assert ModelName.derive("///").name == "model"
