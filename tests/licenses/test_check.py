"""check_use: the policy rules, each with the clause it quotes and the remedy it offers."""

from __future__ import annotations

import pytest

from hearth.errors import PolicyError
from hearth.licenses.check import check_use
from hearth.licenses.detect import detect_license
from hearth.licenses.policy import Policy

COMMERCIAL = Policy(commercial=True)


@pytest.mark.parametrize("use", ["pull", "run", "serve", "tune"])
def test_non_commercial_license_refused_under_commercial(use: str) -> None:
    with pytest.raises(PolicyError) as info:
        check_use("cc-by-nc-4.0", COMMERCIAL, use)
    err = info.value
    assert "for NonCommercial purposes only" in err.clause
    assert err.clause in str(err)
    assert "hearth policy set commercial false" in err.remedy
    assert "hearth policy set allow cc-by-nc-4.0" in err.remedy
    assert err.exit_code == 3


def test_non_commercial_license_allowed_when_not_commercial_or_cleared() -> None:
    assert check_use("cc-by-nc-4.0", Policy(), "run").basis == "license"
    decision = check_use("cc-by-nc-4.0", Policy(commercial=True, allow=("cc-by-nc-4.0",)), "serve")
    assert decision.basis == "allow list"
    # an acceptance cannot turn a non-commercial license into a commercial one
    with pytest.raises(PolicyError):
        check_use("cc-by-nc-4.0", COMMERCIAL, "run", acceptances={"cc-by-nc-4.0"})


def test_apache_commercial_ok_without_warnings() -> None:
    decision = check_use("Apache 2.0", COMMERCIAL, "serve")
    assert decision.allowed and decision.license_id == "apache-2.0"
    assert decision.warnings == ()


def test_unknown_warns_by_default_and_refused_under_deny() -> None:
    decision = check_use("unknown", Policy(), "pull")
    assert any("could not be identified" in w for w in decision.warnings)
    with pytest.raises(PolicyError) as info:
        check_use("unknown", Policy(unknown="deny"), "pull")
    assert 'unknown = "deny"' in info.value.clause
    assert "--accept-license" in info.value.remedy
    assert check_use("unknown", Policy(unknown="deny"), "pull", {"unknown"}).basis == "acceptance"


def test_conditional_license_commercial_needs_acceptance() -> None:
    # non-commercial use of Gemma: allowed, with its terms shown
    decision = check_use("gemma", Policy(), "run")
    assert "Prohibited Use Policy" in decision.warnings[0]
    with pytest.raises(PolicyError) as info:
        check_use("gemma", COMMERCIAL, "serve")
    assert "Gemma Prohibited Use Policy" in info.value.clause
    assert "--accept-license" in info.value.remedy
    accepted = check_use("gemma", COMMERCIAL, "serve", acceptances={"gemma"})
    assert accepted.basis == "acceptance"
    # the terms were shown until the acceptance; with it on record they are not repeated
    assert not any("ai.google.dev/gemma/terms" in w for w in accepted.warnings)
    assert "--accept-license" in decision.warnings[0]


def test_user_cap() -> None:
    big = Policy(commercial=True, monthly_active_users=800_000_000)
    with pytest.raises(PolicyError) as info:
        check_use("llama3.1", big, "run", acceptances={"llama3.1"})
    assert "700 million monthly active users" in info.value.clause
    assert "800,000,000" in str(info.value)
    check_use("llama3.1", Policy(commercial=True, monthly_active_users=5_000_000), "run",
              acceptances={"llama3.1"})


def test_training_other_models() -> None:
    with pytest.raises(PolicyError) as info:
        check_use("apache-2.0", Policy(), "train_other")
    assert info.value.clause == "policy.toml: train_other_models = false."
    trains = Policy(train_other_models=True)
    assert check_use("apache-2.0", trains, "train_other").basis == "license"
    with pytest.raises(PolicyError) as info:
        check_use("llama2", trains, "train_other", acceptances={"llama2"})
    assert "to improve any other large language model" in info.value.clause
    # an intended use: refused already at pull, before the model is fetched
    with pytest.raises(PolicyError):
        check_use("llama3", trains, "pull")
    with pytest.raises(PolicyError, match="--accept-license"):
        check_use("llama3.1", trains, "train_other")
    decision = check_use("llama3.1", trains, "train_other", acceptances={"llama3.1"})
    assert any("'Llama' at the beginning" in w for w in decision.warnings)


def test_deny_list_wins_over_everything() -> None:
    with pytest.raises(PolicyError) as info:
        check_use("mit", Policy(deny=("mit",)), "run", acceptances={"mit"})
    assert "deny" in info.value.clause


def test_conflicting_detection_uses_strictest_and_warns() -> None:
    detection = detect_license({"general.license": "apache-2.0"},
                               card_text="---\nlicense: cc-by-nc-4.0\n---\n")
    with pytest.raises(PolicyError, match="NonCommercial"):
        check_use(detection, COMMERCIAL, "pull")
    decision = check_use(detection, Policy(), "pull")
    assert "gguf says apache-2.0, card says cc-by-nc-4.0" in decision.warnings[0]


def test_bad_use_rejected() -> None:
    with pytest.raises(ValueError, match="use must be one of"):
        check_use("mit", Policy(), "sell")
