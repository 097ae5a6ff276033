"""GenerationDefaults: Ollama's values, then the model file's, then the catalog's; a bounded
output limit always; completion-style defaults for a base model; bad values fail at load."""

from __future__ import annotations

import pytest

from hearth.engine.generation_defaults import (
    CHAT_MAX_TOKENS,
    OLLAMA_SAMPLING,
    GenerationDefaults,
)
from hearth.errors import InvalidParameterError


def test_ollama_defaults_and_a_bounded_limit() -> None:
    d = GenerationDefaults.resolve()
    assert {k: getattr(d, k) for k in OLLAMA_SAMPLING} == dict(OLLAMA_SAMPLING)
    assert d.max_tokens == CHAT_MAX_TOKENS and d.stop == ()


def test_later_sources_win_knob_by_knob() -> None:
    d = GenerationDefaults.resolve(
        {"temperature": 0.6, "max_new_tokens": 300, "eos_token_id": [1, 2], "num_predict": None},
        {"temperature": 0.3},
    )
    assert (d.temperature, d.max_tokens, d.top_k) == (0.3, 300, 40)
    assert d.sources["temperature"] == "catalog" and d.sources["max_tokens"] == "model"
    assert d.sources["top_k"] == "ollama"


def test_unbounded_is_never_a_default() -> None:
    assert GenerationDefaults.resolve({"num_predict": -1}).max_tokens == CHAT_MAX_TOKENS


def test_base_model_gets_completion_defaults() -> None:
    d = GenerationDefaults.resolve(chat=False)
    assert d.max_tokens == 256 and d.stop == ("\n\n",)
    assert d.sampling_params().stop == ("\n\n",)


def test_request_values_win_and_none_means_unset() -> None:
    d = GenerationDefaults.resolve()
    p = d.sampling_params(temperature=0.0, top_p=None, max_tokens=7)
    assert (p.temperature, p.top_p, p.max_tokens, p.repetition_penalty) == (0.0, 0.9, 7, 1.0)


def test_show_rows_say_where_each_value_came_from() -> None:
    d = GenerationDefaults.resolve(chat=False).with_values(temperature=0.1)
    rows = {name: (value, source) for name, value, source in d.describe()}
    assert rows["temperature"] == ("0.1", "user")
    assert rows["repeat_penalty"] == ("1", "ollama")
    assert rows["num_predict"] == ("256", "completion")
    assert rows["stop"] == ("'\\n\\n'", "completion")


def test_a_broken_model_file_fails_naming_the_knob() -> None:
    with pytest.raises(InvalidParameterError, match="top_p"):
        GenerationDefaults.resolve({"top_p": 3.0})
    with pytest.raises(InvalidParameterError, match="temperature"):
        GenerationDefaults.resolve({"temperature": "warm"})


def test_modelfile_parameters_reach_the_sampling_params() -> None:
    """Every sampling PARAMETER a Modelfile may carry is applied, not only stored."""
    modelfile = {
        "typical_p": 0.7,
        "repeat_penalty": 1.2,
        "repeat_last_n": 32,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.25,
        "seed": 42,
        "min_p": 0.05,
        "num_keep": 4,  # no sampling knob: ignored
    }
    d = GenerationDefaults.resolve(modelfile=modelfile)
    p = d.sampling_params()
    assert (p.typical_p, p.repetition_penalty, p.repeat_last_n) == (0.7, 1.2, 32)
    assert (p.presence_penalty, p.frequency_penalty, p.seed, p.min_p) == (0.5, -0.25, 42, 0.05)
    assert d.sources["seed"] == d.sources["repeat_last_n"] == "modelfile"
    assert d.sampling_params(seed=7).seed == 7  # a request's seed wins
    rows = {name: (value, source) for name, value, source in d.describe()}
    assert rows["seed"] == ("42", "modelfile") and rows["repeat_last_n"] == ("32", "modelfile")
    # Ollama's seed -1: a fresh draw each time; its window -1: the whole context
    d = GenerationDefaults.resolve(modelfile={"seed": -1, "repeat_last_n": -1})
    assert d.seed is None and d.sampling_params().repeat_last_n == -1
    assert "seed" not in {name for name, _, _ in d.describe()}


def test_ollama_window_by_default_and_bad_values_fail() -> None:
    p = GenerationDefaults.resolve().sampling_params(repetition_penalty=1.1)
    assert p.repeat_last_n == 64 and p.uses_repetition_penalty  # Ollama's window
    with pytest.raises(InvalidParameterError, match="typical_p"):
        GenerationDefaults.resolve(modelfile={"typical_p": 0.0})
    with pytest.raises(InvalidParameterError, match="repeat_last_n"):
        GenerationDefaults.resolve(modelfile={"repeat_last_n": -5})
