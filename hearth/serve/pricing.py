"""What the usage ledger's tokens would have cost on hosted APIs: the arena's dated,
sourced price table (hearth/arena/api_prices.toml, the one `hearth compare` uses), or the
TOML file of the same shape that the `price_table` setting names. Knows nothing of
requests."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hearth.arena.compare import ApiPrice, load_prices


@dataclass(frozen=True)
class PriceTable:
    prices: tuple[ApiPrice, ...]

    def costs(self, prompt_tokens: int, output_tokens: int) -> dict[str, float]:
        """US dollars per hosted model for these tokens."""
        return {
            p.model: round(
                (prompt_tokens * p.input_per_mtok + output_tokens * p.output_per_mtok) / 1e6, 6
            )
            for p in self.prices
        }

    def to_dict(self) -> list[dict[str, Any]]:
        return [asdict(p) for p in self.prices]


def load_price_table(path: str = "") -> PriceTable:
    """The table at `path` (a TOML file), or hearth's own when `path` is empty."""
    return PriceTable(tuple(load_prices(Path(path).expanduser() if path else None)))
