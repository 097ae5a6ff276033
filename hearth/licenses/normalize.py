"""License names as people and files write them ("Apache 2.0", "apache2", "llama3_1",
"Llama 3.1 Community License", a link to the text) → one canonical license id from the
facts table. Knows nothing of where the name came from."""

from __future__ import annotations

import functools
import re

from hearth.licenses.facts import UNKNOWN, all_facts

# ids that name no license at all: fall through to license_name / license_link
_PLACEHOLDERS = {"other", "unknown", "none", "noassertion", "custom", ""}


def fold(raw: str) -> str:
    """Lower-case; spaces, underscores and slashes become "-"; other punctuation goes."""
    key = raw.strip().lower()
    key = re.sub(r"[\s_/]+", "-", key)
    key = re.sub(r"[^a-z0-9.+-]", "", key)
    return re.sub(r"-{2,}", "-", key).strip("-.")


@functools.cache  # derived from the (cached) facts table
def _alias_map() -> dict[str, str]:
    table: dict[str, str] = {}
    for license_id, facts in all_facts().items():
        for alias in (license_id, *facts.aliases):
            key = fold(alias)
            if table.setdefault(key, license_id) != license_id:
                raise ValueError(f"licenses.toml: alias {alias!r} names both {table[key]} and {license_id}")
    return table


def normalize_license(raw: str | None, name: str | None = None, link: str | None = None) -> str:
    """The canonical id for a license field, its optional `name` (HF `license_name`, GGUF
    `general.license.name`) and `link`. "unknown" when none of them is recognised."""
    aliases = _alias_map()
    for candidate in (raw, name):
        if candidate is None:
            continue
        key = fold(candidate)
        if key in _PLACEHOLDERS:
            continue
        found = aliases.get(key)
        if found is not None and found != UNKNOWN:
            return found
        # "Apache License 2.0 (see LICENSE)" and similar: drop a trailing "-license"/"-agreement"
        trimmed = re.sub(r"(-license)?(-agreement)?$", "", key)
        found = aliases.get(trimmed)
        if found is not None and found != UNKNOWN:
            return found
    if link:
        lowered = link.strip().lower()
        for license_id, facts in all_facts().items():
            if any(pattern in lowered for pattern in facts.link_patterns):
                return license_id
    return UNKNOWN
