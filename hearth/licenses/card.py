"""The YAML front matter of a Hugging Face model card (README.md): the `license`,
`license_name` and `license_link` fields. Knows nothing of the rest of the card."""

from __future__ import annotations

from typing import Any

import yaml


def front_matter(card_text: str) -> dict[str, Any]:
    """The card's YAML header as a dict; {} when there is none or it does not parse (a broken
    card must not stop an import: the license then comes from the other signals)."""
    lines = card_text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    for end, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            try:
                data = yaml.safe_load("\n".join(lines[1:end]))
            except yaml.YAMLError:
                return {}
            return data if isinstance(data, dict) else {}
    return {}


def card_license_fields(card_text: str) -> tuple[list[str], str | None, str | None]:
    """(license values, license_name, license_link). `license` may be a list in a card."""
    data = front_matter(card_text)
    raw = data.get("license")
    values = [str(v) for v in raw] if isinstance(raw, list) else ([str(raw)] if raw else [])
    name = data.get("license_name")
    link = data.get("license_link")
    return values, (str(name) if name else None), (str(link) if link else None)
