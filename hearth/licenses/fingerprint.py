"""Recognise a LICENSE file (plain text, Markdown or an HTML page) by the distinctive
phrases listed in the facts table. Phrases rather than whole-text hashes: shipped copies
differ in headers, wrapping, HTML and the Acceptable Use Policy appended or not, so an exact
hash would miss most of them. Knows nothing of models or policies."""

from __future__ import annotations

import html
import re

from hearth.licenses.facts import all_facts


def normalize_text(text: str) -> str:
    """Lower-case words separated by single spaces; markup, scripts and punctuation gone."""
    if "<" in text and re.search(r"</?(html|body|div|p|span|h\d)\b", text, re.IGNORECASE):
        text = re.sub(r"<(script|style)\b.*?</\1>", " ", text, flags=re.IGNORECASE | re.DOTALL)
        text = re.sub(r"<[^>]+>", " ", text)
        text = html.unescape(text)
    text = text.lower().replace("’", "'")
    text = re.sub(r"[^a-z0-9]+", " ", text)
    return text.strip()


def recognize_license_text(text: str) -> str | None:
    """The license id whose phrases all appear in `text`. When several match (a custom
    license built on Apache-2.0's text, say) the strictest wins, then the one with the most
    matched text (the most specific). None when nothing matches."""
    body = normalize_text(text)
    best: tuple[tuple[int, int, float], int, str] | None = None
    for license_id, facts in all_facts().items():
        if not facts.fingerprints:
            continue
        if all(phrase in body for phrase in facts.fingerprints):
            key = (facts.strictness, sum(len(phrase) for phrase in facts.fingerprints), license_id)
            if best is None or key[:2] > best[:2]:
                best = key
    return best[2] if best else None
