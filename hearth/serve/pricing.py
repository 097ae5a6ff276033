"""The price table: what hosted APIs charge per million input and output tokens, each price
with where it came from and its date, so the usage ledger can say what the same tokens
would have cost there. The built-in table is `prices.toml` beside this module; the
`price_table` setting names a TOML file of the same shape to use instead. Knows nothing of
requests."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from hearth.errors import UserInputError


@dataclass(frozen=True)
class HostedPrice:
    provider: str
    model: str
    input_per_mtok: float  # US dollars per million prompt tokens
    output_per_mtok: float  # US dollars per million output tokens
    source: str  # where the price was published
    as_of: str  # the date it was read there

    def cost(self, prompt_tokens: int, output_tokens: int) -> float:
        return (prompt_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


@dataclass(frozen=True)
class PriceTable:
    prices: tuple[HostedPrice, ...]

    def costs(self, prompt_tokens: int, output_tokens: int) -> dict[str, float]:
        """US dollars per hosted model for these tokens."""
        return {p.model: round(p.cost(prompt_tokens, output_tokens), 6) for p in self.prices}

    def to_dict(self) -> list[dict[str, Any]]:
        return [asdict(p) for p in self.prices]


_FIELDS = ("provider", "model", "source", "as_of")


def _parse(data: dict[str, Any], where: str) -> PriceTable:
    try:
        prices = tuple(
            HostedPrice(
                provider=str(p["provider"]),
                model=str(p["model"]),
                input_per_mtok=float(p["input_per_mtok"]),
                output_per_mtok=float(p["output_per_mtok"]),
                source=str(p["source"]),
                as_of=str(p["as_of"]),
            )
            for p in data.get("price", [])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UserInputError(
            f"{where}: each [[price]] entry needs {', '.join(_FIELDS)}, input_per_mtok and "
            f"output_per_mtok (missing or bad: {exc}); fix the file or unset "
            "HEARTH_PRICE_TABLE to use the built-in table"
        ) from exc
    return PriceTable(prices)


def load_price_table(path: str = "") -> PriceTable:
    """The table at `path` (a TOML file), or the built-in one when `path` is empty."""
    if not path:
        text = resources.files("hearth.serve").joinpath("prices.toml").read_text()
        return _parse(tomllib.loads(text), "built-in prices.toml")
    file = Path(path).expanduser()
    try:
        data = tomllib.loads(file.read_text())
    except OSError as exc:
        raise UserInputError(
            f"cannot read the price table {file} ({exc.strerror}); fix HEARTH_PRICE_TABLE"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"{file}: {exc}; fix the price table") from exc
    return _parse(data, str(file))
