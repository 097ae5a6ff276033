"""`--lora NAME=PATH` parsing and the serve verb's refusal of adapters without a base."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.cli import main
from hearth.errors import ConflictError, NotFoundError, UserInputError
from hearth.serve.served_adapters import AdapterSpec, ServedAdapters, parse_lora_option


def test_lora_option_is_name_equals_path_or_a_folder(tmp_path: Path) -> None:
    assert parse_lora_option("sql=/srv/adapters/sql") == ("sql", "/srv/adapters/sql")
    assert parse_lora_option(str(tmp_path / "pirate")) == ("pirate", str(tmp_path / "pirate"))
    with pytest.raises(UserInputError, match="NAME=PATH"):
        parse_lora_option("sql=")


def test_registry_refuses_a_second_adapter_of_one_name_and_lists_on_404() -> None:
    adapters = ServedAdapters()
    adapters.add(AdapterSpec("sql", "smollm2:135m", Path("/a")))
    with pytest.raises(ConflictError, match="already loaded"):
        adapters.add(AdapterSpec("sql", "smollm2:135m", Path("/b")))
    assert adapters.of_base("smollm2:135m") == {"sql": Path("/a")}
    with pytest.raises(NotFoundError, match="loaded adapters: sql"):
        adapters.pop("nope")


def test_serve_with_lora_but_no_model_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--lora", "sql=/srv/sql"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--lora needs the base model" in err
    assert "Traceback" not in err
