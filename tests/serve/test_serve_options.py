"""ServeOptions takes its defaults from the one definition of each knob."""

from __future__ import annotations

import pytest

from hearth.config import DEFAULT_PORT, Settings
from hearth.model.quant_modes import QUANT_MODES
from hearth.serve.options import ServeOptions


def test_defaults_come_from_the_shared_constants() -> None:
    options = ServeOptions()
    assert options.port == DEFAULT_PORT == Settings().port
    assert options.quant == "auto"  # the file's own quantization, as `hearth run` and LLM


@pytest.mark.parametrize("quant", QUANT_MODES)
def test_every_quant_mode_is_accepted(quant: str) -> None:
    assert ServeOptions(quant=quant).quant == quant


def test_unknown_quant_names_the_modes() -> None:
    with pytest.raises(ValueError, match="quant must be one of auto, none, int8, int4"):
        ServeOptions(quant="int3")
