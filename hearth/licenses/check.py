"""The policy check: may this model, under its license, be used this way, given the
organisation's policy and the acceptances on record? A pure function: no files, no
database; `gate.py` gathers those. A refusal raises PolicyError with the clause that forbids
the use, quoted, and what would allow it.

Order of the rules, first match decides:
 1. `deny` lists the license                         → refused
 2. use is train_other but train_other_models=false  → refused (not an intended use)
 3. `allow` lists the license                        → allowed (the organisation cleared it)
 4. the license is unknown and unknown="deny"        → refused unless accepted
 5. commercial=true and the license forbids it       → refused
 6. monthly_active_users above the license's cap     → refused
 7. training other models and the license forbids it → refused
 8. a conditional license needing acceptance, used commercially or to train other
    models, with no acceptance on record             → refused until --accept-license
 otherwise allowed, with warnings for unknown or conditional terms and conflicting signals."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal, get_args

from hearth.errors import PolicyError
from hearth.licenses.detect import LicenseDetection
from hearth.licenses.facts import UNKNOWN, LicenseFacts, get_facts
from hearth.licenses.normalize import normalize_license
from hearth.licenses.policy import Policy

Use = Literal["pull", "run", "serve", "tune", "train_other"]
USES: tuple[str, ...] = get_args(Use)

_VERB = {
    "pull": "pulling",
    "run": "running",
    "serve": "serving",
    "tune": "fine-tuning",
    "train_other": "training another model on the outputs of",
}


@dataclass(frozen=True)
class PolicyDecision:
    """An allowed use: `basis` says why ("license", "allow list", "acceptance"),
    `warnings` what the user should still know."""

    license_id: str
    use: str
    basis: str
    warnings: tuple[str, ...] = ()
    allowed: bool = True


def _refuse(facts: LicenseFacts, use: str, why: str, clause: str, remedy: str) -> PolicyError:
    message = (
        f"{_VERB[use]} this model is refused by the license policy: {why}. "
        f"Clause: {clause} To allow it: {remedy}"
    )
    return PolicyError(message, clause=clause, remedy=remedy)


def _detection(license: LicenseDetection | str) -> LicenseDetection:
    if isinstance(license, LicenseDetection):
        return license
    return LicenseDetection(license_id=normalize_license(license))


def terms_notice(facts: LicenseFacts) -> str:
    """The one line that points a user at a conditional license's terms."""
    aup = f"; acceptable use: {facts.acceptable_use_policy}" if facts.acceptable_use_policy else ""
    return f"{facts.id}: {facts.summary} Terms: {facts.source_url}{aup}"


@dataclass(frozen=True)
class _Case:
    """One use of one model, as the rules below read it."""

    lid: str
    facts: LicenseFacts
    use: str
    policy: Policy
    accepted: bool
    # training other models is part of the use: asked for now, or declared in the policy
    training: bool
    warnings: tuple[str, ...]

    @property
    def allow_remedy(self) -> str:
        return f"if your organisation has cleared this license, `hearth policy set allow {self.lid}`"

    def refuse(self, why: str, clause: str, remedy: str) -> PolicyError:
        return _refuse(self.facts, self.use, why, clause, remedy)

    def decide(self, basis: str, *more: str) -> PolicyDecision:
        return PolicyDecision(self.lid, self.use, basis, (*self.warnings, *more))


def check_use(
    license: LicenseDetection | str,
    policy: Policy,
    use: Use | str,
    acceptances: Collection[str] = (),
) -> PolicyDecision:
    """Decide one use of one model. `license`: its detection or a license id (aliases are
    normalised); `acceptances`: license ids explicitly accepted for this model.
    Raises PolicyError (with .clause and .remedy) when the use is refused."""
    if use not in USES:
        raise ValueError(f"use must be one of {USES}, got {use!r}")
    detection = _detection(license)
    lid = detection.license_id
    warnings: tuple[str, ...] = ()
    if detection.conflict:
        warnings = (f"license signals disagree: {detection.describe_conflict()}",)
    case = _Case(lid, get_facts(lid), use, policy, lid in acceptances,
                 use == "train_other" or policy.train_other_models, warnings)
    decision = _policy_lists(case)  # rules 1-3
    if decision is None and lid == UNKNOWN:
        decision = _unknown_license(case)  # rule 4
    if decision is not None:
        return decision
    _license_limits(case)  # rules 5-7
    return _conditional_terms(case)  # rule 8


def _policy_lists(case: _Case) -> PolicyDecision | None:
    """Rules 1-3: what policy.toml decides whatever the license says."""
    lid, policy, facts = case.lid, case.policy, case.facts
    if lid in policy.deny:
        raise case.refuse(f"policy.toml denies the license {lid} ({facts.name})",
                          f"policy.toml: deny = {list(policy.deny)}.",
                          f"remove {lid} from deny (`hearth policy set deny ...`)")
    if case.use == "train_other" and not policy.train_other_models:
        raise case.refuse("the policy does not include training other models",
                          "policy.toml: train_other_models = false.",
                          "`hearth policy set train_other_models true` if that is an intended use")
    if lid in policy.allow:
        return case.decide("allow list", f"{lid} is allowed by policy.toml's allow list")
    return None


def _unknown_license(case: _Case) -> PolicyDecision:
    """Rule 4: a license that could not be identified."""
    if case.policy.unknown == "deny" and not case.accepted:
        raise case.refuse(
            "the model's license could not be identified and policy.toml has "
            "unknown = \"deny\"", f"policy.toml: unknown = \"deny\". {case.facts.commercial_clause}",
            "read the model card, then re-run with --accept-license to record that you "
            f"accept its terms for this model; or {case.allow_remedy}; or "
            "`hearth policy set unknown warn`")
    return case.decide("acceptance" if case.accepted else "license",
                       "the model's license could not be identified: read its model card and "
                       "LICENSE before relying on it (set unknown = \"deny\" in policy.toml "
                       "to refuse such models)")


def _license_limits(case: _Case) -> None:
    """Rules 5-7: what the license forbids outright for this policy."""
    lid, policy, facts = case.lid, case.policy, case.facts
    if policy.commercial and facts.commercial_use == "no":
        raise case.refuse(
            f"policy.toml says commercial = true and the {facts.name} ({lid}) "
            "does not allow commercial use", facts.commercial_clause,
            "obtain a commercial license from the licensor and then "
            f"`hearth policy set allow {lid}`; or `hearth policy set commercial false` if "
            "this use is not commercial")
    cap = facts.user_cap
    if cap is not None and policy.monthly_active_users > cap:
        raise case.refuse(
            f"policy.toml says monthly_active_users = {policy.monthly_active_users:,}, "
            f"above the {facts.name}'s cap of {cap:,}", facts.user_cap_clause,
            f"obtain a license from the licensor and then `hearth policy set allow {lid}`; "
            "or correct monthly_active_users")
    if case.training and facts.outputs_may_train_other_models == "no":
        raise case.refuse(
            f"the policy includes training other models and the {facts.name} "
            "forbids using the outputs for that", facts.outputs_note,
            f"{case.allow_remedy}; or `hearth policy set train_other_models false`")


def _conditional_terms(case: _Case) -> PolicyDecision:
    """Rule 8: conditional terms need an acceptance on record; otherwise allowed, with the
    terms shown."""
    lid, policy, facts = case.lid, case.policy, case.facts
    needs = []
    if policy.commercial and facts.commercial_use == "conditional":
        needs.append(("commercial use", facts.commercial_clause))
    if case.training and facts.outputs_may_train_other_models == "conditional":
        needs.append(("training other models", facts.outputs_note))
    if needs and facts.requires_acceptance and not case.accepted:
        what = " and ".join(n for n, _ in needs)
        raise case.refuse(
            f"{what} under the {facts.name} ({lid}) is allowed only on its "
            "conditions, and no acceptance of them is on record for this model",
            " ".join(c for _, c in needs),
            f"read {facts.source_url} and re-run with --accept-license to record your "
            f"acceptance (who and when) for this model; or {case.allow_remedy}")
    more = []
    # the terms are shown until an acceptance is on record: once per acceptance, not per run
    if facts.commercial_use == "conditional" and not case.accepted:
        more.append(terms_notice(facts) + " (--accept-license records that you accept "
                    "them; this notice then stops)")
    if case.training and facts.outputs_may_train_other_models == "conditional":
        more.append(f"{lid}, training other models: {facts.outputs_note}")
    return case.decide("acceptance" if needs and case.accepted else "license", *more)
