"""License facts (a data table), detection from model files and cards, and the use policy check. Knows nothing of tensors."""

from hearth.licenses.check import USES, PolicyDecision, Use, check_use
from hearth.licenses.detect import (
    LicenseDetection,
    LicenseSignal,
    detect_license,
    detection_from_stored,
    format_chain,
    inherit,
    inherit_many,
)
from hearth.licenses.facts import LicenseFacts, all_facts, commercial_marker, get_facts
from hearth.licenses.gate import enforce
from hearth.licenses.normalize import normalize_license
from hearth.licenses.policy import Policy, load_policy, save_policy, set_policy_value

__all__ = [
    "USES",
    "LicenseDetection",
    "LicenseFacts",
    "LicenseSignal",
    "Policy",
    "PolicyDecision",
    "Use",
    "all_facts",
    "check_use",
    "commercial_marker",
    "detect_license",
    "detection_from_stored",
    "enforce",
    "format_chain",
    "get_facts",
    "inherit",
    "inherit_many",
    "load_policy",
    "normalize_license",
    "save_policy",
    "set_policy_value",
]
