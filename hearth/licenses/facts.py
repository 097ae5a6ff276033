"""The license facts table: `licenses.toml` (package data) loaded into frozen `LicenseFacts`,
one per license id, and the strictness order used to pick among conflicting licenses.

Knows nothing of models, files, policies or the database: only what each license says."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from typing import Any, Literal, get_args

Permission = Literal["yes", "conditional", "no", "unknown"]
PERMISSIONS: tuple[str, ...] = get_args(Permission)

UNKNOWN = "unknown"

# Higher is stricter. An unidentified license sits between "conditional" and "no": we cannot
# promise it allows anything, but we have not read a clause that forbids it either.
_STRICTNESS = {"yes": 0, "conditional": 1, "unknown": 2, "no": 3}


@dataclass(frozen=True)
class LicenseFacts:
    """What one license allows. Clauses are quoted or closely paraphrased from the text at
    `source_url`, which governs; this is a summary, not legal advice."""

    id: str
    name: str
    summary: str
    commercial_use: Permission
    commercial_clause: str
    user_cap: int | None  # monthly active users above which a separate license is needed
    user_cap_clause: str
    outputs_may_train_other_models: Permission
    outputs_note: str
    derivative_obligations: str
    attribution: str
    acceptable_use_policy: str  # URL, "" when the license has none
    redistribution: str
    source_url: str
    requires_acceptance: bool  # a click-through agreement: commercial use needs a recorded acceptance
    aliases: tuple[str, ...]
    link_patterns: tuple[str, ...]
    fingerprints: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in ("commercial_use", "outputs_may_train_other_models"):
            value = getattr(self, name)
            if value not in PERMISSIONS:
                raise ValueError(f"{self.id}: {name} must be one of {PERMISSIONS}, got {value!r}")
        if self.user_cap is not None and self.user_cap <= 0:
            raise ValueError(f"{self.id}: user_cap must be positive or None, got {self.user_cap}")
        if self.user_cap is not None and not self.user_cap_clause:
            raise ValueError(f"{self.id}: user_cap_clause must quote the clause behind user_cap")
        for name in ("name", "summary", "commercial_clause", "outputs_note",
                     "derivative_obligations", "attribution", "redistribution"):
            if not getattr(self, name).strip():
                raise ValueError(f"{self.id}: {name} must not be empty")

    @property
    def strictness(self) -> tuple[int, int, float]:
        """Sort key, larger is stricter: commercial use, then training other models on the
        outputs, then a smaller user cap."""
        cap = float(self.user_cap) if self.user_cap is not None else float("inf")
        return (
            _STRICTNESS[self.commercial_use],
            _STRICTNESS[self.outputs_may_train_other_models],
            -cap,
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in fields(self)}


_FIELDS = {f.name for f in fields(LicenseFacts)} - {"id"}


def _parse(license_id: str, raw: dict[str, Any]) -> LicenseFacts:
    unknown = set(raw) - _FIELDS
    missing = _FIELDS - set(raw)
    if unknown or missing:
        raise ValueError(
            f"licenses.toml [{license_id}]: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}"
        )
    values = dict(raw)
    values["user_cap"] = int(raw["user_cap"]) or None  # TOML has no null: 0 means no cap
    for name in ("aliases", "link_patterns", "fingerprints"):
        values[name] = tuple(raw[name])
    return LicenseFacts(id=license_id, **values)


@functools.cache  # the table is package data: read it once per process
def all_facts() -> dict[str, LicenseFacts]:
    """Every license id → its facts, in the order of licenses.toml."""
    text = resources.files("hearth.licenses").joinpath("licenses.toml").read_text("utf-8")
    table = tomllib.loads(text)
    return {license_id: _parse(license_id, raw) for license_id, raw in table.items()}


def get_facts(license_id: str) -> LicenseFacts:
    """The facts for a canonical id (see `normalize_license`); unknown ids get the
    "unknown" entry rather than an error, because every model must be checkable."""
    table = all_facts()
    return table.get(license_id, table[UNKNOWN])


def stricter(a: str, b: str) -> str:
    """The stricter of two license ids (`a` on a tie)."""
    return b if get_facts(b).strictness > get_facts(a).strictness else a


_MARKERS = {"yes": "yes", "conditional": "cond", "no": "no", "unknown": "?"}


def commercial_marker(license_id: str | None) -> str:
    """A short commercial-use marker for tables (`hearth list`): yes / cond / no / ?."""
    return _MARKERS[get_facts(license_id or UNKNOWN).commercial_use]
