"""Which license a model is under, from every signal available at pull/import: GGUF
metadata (`general.license`, `.name`, `.link`), the HF model card's YAML front matter
(`license`, `license_name`, `license_link`), a LICENSE file recognised by fingerprint, the
catalog entry, and for derived models the parent's license. Conflicting signals are all
kept and the strictest wins.

Knows nothing of the store's layout, of policies or of the database: callers hand in
metadata and texts, and persist `LicenseDetection.to_dict()` with the model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hearth.licenses.card import card_license_fields
from hearth.licenses.facts import UNKNOWN, LicenseFacts, get_facts
from hearth.licenses.fingerprint import recognize_license_text
from hearth.licenses.normalize import normalize_license

SOURCES = ("gguf", "card", "license_file", "catalog", "parent")


@dataclass(frozen=True)
class LicenseSignal:
    """One piece of evidence: where it came from, the canonical id, what the source said."""

    source: str  # one of SOURCES
    license_id: str
    raw: str

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")


@dataclass(frozen=True)
class LicenseDetection:
    """The license a model is under (`license_id`, the strictest of `signals`), every signal
    seen, whether they disagree, and for derived models the chain of (model name, license
    id) from the oldest ancestor down to the direct parent."""

    license_id: str
    signals: tuple[LicenseSignal, ...] = ()
    conflict: bool = False
    chain: tuple[tuple[str, str], ...] = field(default=())

    @property
    def facts(self) -> LicenseFacts:
        return get_facts(self.license_id)

    def describe_conflict(self) -> str:
        """"gguf says apache-2.0, card says cc-by-nc-4.0; the strictest, cc-by-nc-4.0, applies"."""
        said = ", ".join(f"{s.source} says {s.license_id}" for s in self.signals)
        return f"{said}; the strictest, {self.license_id}, applies"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for the store's manifest; `from_dict` reads it back."""
        return {
            "license_id": self.license_id,
            "signals": [{"source": s.source, "license_id": s.license_id, "raw": s.raw}
                        for s in self.signals],
            "conflict": self.conflict,
            "chain": [list(link) for link in self.chain],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LicenseDetection:
        return cls(
            license_id=str(data["license_id"]),
            signals=tuple(LicenseSignal(str(s["source"]), str(s["license_id"]), str(s["raw"]))
                          for s in data.get("signals", ())),
            conflict=bool(data.get("conflict", False)),
            chain=tuple((str(name), str(lid)) for name, lid in data.get("chain", ())),
        )


def _text(value: Any) -> str | None:
    """A GGUF metadata value as text: str, bytes, or a gguf ReaderField (`.contents()`)."""
    if value is None:
        return None
    if hasattr(value, "contents"):
        value = value.contents()
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, list | tuple):
        value = ", ".join(str(v) for v in value)
    text = str(value).strip()
    return text or None


def _raw(value: str | None, name: str | None, link: str | None) -> str:
    extras = [f"{k}: {v}" for k, v in (("name", name), ("link", link)) if v]
    head = value or ""
    return f"{head} ({'; '.join(extras)})".strip() if extras else head


def strictest(signals: Sequence[LicenseSignal]) -> str:
    """The id of the strictest signal; the first one on a tie; "unknown" with none."""
    best: str | None = None
    for signal in signals:
        if best is None or get_facts(signal.license_id).strictness > get_facts(best).strictness:
            best = signal.license_id
    return best or UNKNOWN


def from_signals(signals: Sequence[LicenseSignal],
                 chain: Sequence[tuple[str, str]] = ()) -> LicenseDetection:
    ids = {s.license_id for s in signals}
    return LicenseDetection(
        license_id=strictest(signals),
        signals=tuple(signals),
        conflict=len(ids) > 1,
        chain=tuple(chain),
    )


def detect_license(
    gguf_metadata: Mapping[str, Any] | None = None,
    card_text: str | None = None,
    license_text: str | None = None,
    catalog_license: str | None = None,
) -> LicenseDetection:
    """Every license signal found in what the caller has; the strictest wins.

    `gguf_metadata`: GGUF key → value (str/bytes or gguf ReaderField); `card_text`: the
    model card (README.md) with its YAML front matter; `license_text`: a LICENSE file's text
    (plain, Markdown or HTML); `catalog_license`: the id or name the catalog entry gives.
    With no signal at all the license is "unknown"."""
    signals: list[LicenseSignal] = []
    if gguf_metadata:
        value = _text(gguf_metadata.get("general.license"))
        name = _text(gguf_metadata.get("general.license.name"))
        link = _text(gguf_metadata.get("general.license.link"))
        if value or name or link:
            signals.append(LicenseSignal("gguf", normalize_license(value, name, link),
                                         _raw(value, name, link)))
    if card_text:
        values, name, link = card_license_fields(card_text)
        card_values: list[str | None] = [*values] or ([None] if name or link else [])
        for value in card_values:
            signals.append(LicenseSignal("card", normalize_license(value, name, link),
                                         _raw(value, name, link)))
    if license_text:
        found = recognize_license_text(license_text)
        if found is not None:
            signals.append(LicenseSignal("license_file", found, "LICENSE file text"))
    if catalog_license:
        signals.append(LicenseSignal("catalog", normalize_license(catalog_license), catalog_license))
    return from_signals(signals)


def detection_from_stored(license_id: str | None, signals_json: str | None) -> LicenseDetection:
    """Rebuild a detection from what the store keeps per model (`ModelRecord.license_id`
    and `.license_signals`, a JSON list of {source, license_id, raw}); signals from
    "parent" rebuild the derivation chain. Malformed entries are skipped."""
    import json

    try:
        raw = json.loads(signals_json or "[]")
    except ValueError:
        raw = []
    signals = tuple(
        LicenseSignal(s["source"], str(s["license_id"]), str(s.get("raw", "")))
        for s in (raw if isinstance(raw, list) else [])
        if isinstance(s, dict) and s.get("source") in SOURCES and s.get("license_id")
    )
    chain = tuple((s.raw, s.license_id) for s in signals if s.source == "parent")
    return LicenseDetection(
        license_id=license_id or strictest(signals),
        signals=signals,
        conflict=len({s.license_id for s in signals}) > 1,
        chain=chain,
    )


def inherit(
    parent: LicenseDetection,
    parent_name: str = "",
    own: LicenseDetection | None = None,
) -> LicenseDetection:
    """The license of a model made from `parent` (copy, fine-tune, merge with one parent):
    the parent's license, or the stricter of it and any signals the derived model carries
    itself (`own`, e.g. an adapter's card). The chain grows by (parent_name, parent id)."""
    signals = [LicenseSignal("parent", parent.license_id, parent_name or parent.license_id)]
    if own is not None:
        signals.extend(s for s in own.signals if s.source != "parent")
    chain = (*parent.chain, (parent_name, parent.license_id)) if parent_name else parent.chain
    return from_signals(signals, chain)


def inherit_many(parents: Sequence[tuple[str, LicenseDetection]]) -> LicenseDetection:
    """A merge of several models: the strictest parent's license applies; the chain lists
    every parent's own chain, then the parents themselves."""
    if not parents:
        raise ValueError("parents must name at least one model")
    signals = [LicenseSignal("parent", d.license_id, name) for name, d in parents]
    chain: list[tuple[str, str]] = []
    for name, detection in parents:
        chain.extend(link for link in detection.chain if link not in chain)
        chain.append((name, detection.license_id))
    return from_signals(signals, chain)


def format_chain(chain: Sequence[tuple[str, str]], name: str | None = None,
                 license_id: str | None = None) -> str:
    """"smollm2:135m (apache-2.0) → my-tune:1 (apache-2.0)"."""
    links = [*chain, *([(name, license_id or UNKNOWN)] if name else [])]
    return " → ".join(f"{n} ({lid})" for n, lid in links)
