"""The one call pull, run, serve, tune and distillation make before they act: load the
policy and this model's acceptances, check the use, record an explicit acceptance when the
user asked for it (`--accept-license`) and it is what allows the use, or the license has terms to accept (their
notice then shows until an acceptance is on record, not on every run). Returns warnings to
show; raises PolicyError on refusal (the CLI exits 3, the server answers 403).

Knows nothing of the store, the engine or HTTP: callers pass the detection (or id) and the
model's digest."""

from __future__ import annotations

from hearth.config import Settings
from hearth.errors import PolicyError
from hearth.licenses.acceptances import accepted_license_ids, record_acceptance
from hearth.licenses.check import Use, check_use, terms_notice
from hearth.licenses.detect import LicenseDetection
from hearth.licenses.facts import get_facts
from hearth.licenses.normalize import normalize_license
from hearth.licenses.policy import load_policy


def enforce(
    detection_or_id: LicenseDetection | str | None,
    use: Use | str,
    settings: Settings,
    model_digest: str,
    accept_license: bool = False,
) -> list[str]:
    """Check `use` of the model with `model_digest` under the policy in settings.home.
    `detection_or_id`: the LicenseDetection, a license id, or None (unknown).
    With `accept_license`, an acceptance (OS user, now, use) is recorded in the database
    when the license's conditions need one and none is on record yet.
    Returns the warnings to show; raises PolicyError when refused."""
    license = "unknown" if detection_or_id is None else detection_or_id
    policy = load_policy(settings)
    accepted = accepted_license_ids(settings, model_digest)
    license_id = _license_id(license)
    try:
        decision = check_use(license, policy, use, accepted)
    except PolicyError:
        if not accept_license:
            raise
        decision = None
    facts = get_facts(license_id)
    has_terms = facts.commercial_use == "conditional" or facts.requires_acceptance
    if decision is not None and not (accept_license and has_terms and license_id not in accepted):
        return list(decision.warnings)
    # record the acceptance: the use needs it, or the user accepts the license's terms (its
    # notice is then shown this once). Raises the original kind of refusal when accepting
    # would not help (deny list, non-commercial license under commercial=true, user cap)
    decision = check_use(license, policy, use, accepted | {license_id})
    acceptance = record_acceptance(settings, model_digest, license_id, use)
    note = (f"recorded acceptance of the {license_id} license for this model by "
            f"{acceptance.user} at {acceptance.accepted_at:%Y-%m-%d %H:%M:%S} UTC")
    terms = [terms_notice(facts)] if facts.id == license_id and has_terms else []
    return [*decision.warnings, *terms, note]


def _license_id(license: LicenseDetection | str) -> str:
    return license.license_id if isinstance(license, LicenseDetection) else normalize_license(license)

