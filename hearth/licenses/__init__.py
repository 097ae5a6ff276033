"""License facts (a data table), detection from model files and cards, and the use policy check. Knows nothing of tensors."""

from hearth.licenses.detect import (
    LicenseDetection,
    LicenseSignal,
    detect_license,
    format_chain,
    inherit,
    inherit_many,
)
from hearth.licenses.facts import LicenseFacts, all_facts, get_facts
from hearth.licenses.normalize import normalize_license

__all__ = [
    "LicenseDetection",
    "LicenseFacts",
    "LicenseSignal",
    "all_facts",
    "detect_license",
    "format_chain",
    "get_facts",
    "inherit",
    "inherit_many",
    "normalize_license",
]
