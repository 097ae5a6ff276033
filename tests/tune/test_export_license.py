"""What a base's license asks of a derivative, read from the license facts: Llama 3.x's name
prefix, Gemma's and Llama's NOTICE text; none for Apache-2.0."""

from __future__ import annotations

from pathlib import Path

from hearth.tune.export import name_problem, notice_file, required_name_prefix


def test_llama_derivatives_must_begin_with_llama() -> None:
    assert required_name_prefix("llama3.1") == "Llama"
    assert required_name_prefix("llama3") == "Llama 3"
    assert name_problem("llama3.1", "llama-3.1-notes") is None
    assert name_problem("llama3", "Llama3-clinic") is None
    problem = name_problem("llama3.1", "clinic-notes")
    assert problem is not None and 'begin with "Llama"' in problem
    assert name_problem("llama3", "llama-clinic") is not None  # needs "Llama 3"
    assert required_name_prefix("apache-2.0") is None and name_problem("gemma", "x") is None


def test_notice_file_carries_the_licenses_text(tmp_path: Path) -> None:
    gemma = notice_file(tmp_path, "gemma")
    assert gemma is not None and gemma.read_text() == (
        "Gemma is provided under and subject to the Gemma Terms of Use found at "
        "ai.google.dev/gemma/terms\n"
    )
    (tmp_path / "llama").mkdir()
    llama = notice_file(tmp_path / "llama", "llama3.1")
    assert llama is not None and llama.read_text().startswith("Llama 3.1 is licensed under")
    assert notice_file(tmp_path, "apache-2.0") is None and notice_file(tmp_path, None) is None
