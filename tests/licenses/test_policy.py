"""policy.toml: defaults, reading, validation, `set` parsing and atomic saving."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.config import load_settings
from hearth.errors import UserInputError
from hearth.licenses.policy import (
    Policy,
    load_policy,
    policy_path,
    save_policy,
    set_policy_value,
)


def test_default_policy_without_file(hearth_home: Path) -> None:
    settings = load_settings()
    assert load_policy(settings) == Policy()
    assert not policy_path(settings).exists()


def test_set_and_reload(hearth_home: Path) -> None:
    settings = load_settings()
    set_policy_value(settings, "commercial", "true")
    set_policy_value(settings, "monthly_active_users", "2.5M")
    set_policy_value(settings, "allow", "Apache 2.0, llama3_1")
    set_policy_value(settings, "deny", "cc-by-nc-4.0")
    set_policy_value(settings, "unknown", "deny")
    set_policy_value(settings, "train_other_models", "yes")
    policy = load_policy(settings)
    assert policy == Policy(commercial=True, monthly_active_users=2_500_000,
                            allow=("apache-2.0", "llama3.1"), deny=("cc-by-nc-4.0",),
                            unknown="deny", train_other_models=True)
    text = (hearth_home / "policy.toml").read_text()
    assert 'allow = ["apache-2.0", "llama3.1"]' in text
    set_policy_value(settings, "allow", "")
    assert load_policy(settings).allow == ()


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("commercial", "perhaps", "commercial must be true or false"),
        ("monthly_active_users", "-5", "monthly_active_users must be >= 0"),
        ("monthly_active_users", "lots", "whole number"),
        ("unknown", "ignore", "unknown must be"),
        ("allow", "not-a-license", "allow: 'not-a-license' is not a license id"),
        ("colour", "red", "unknown policy key 'colour'"),
    ],
)
def test_bad_values_rejected(hearth_home: Path, key: str, value: str, match: str) -> None:
    with pytest.raises(UserInputError, match=match):
        set_policy_value(load_settings(), key, value)
    assert not (hearth_home / "policy.toml").exists()


def test_bad_file_names_the_file(hearth_home: Path) -> None:
    hearth_home.mkdir(parents=True)
    (hearth_home / "policy.toml").write_text("commercial = true\nfavourite = 3\n")
    with pytest.raises(UserInputError, match=r"policy.toml: unknown key\(s\) \['favourite'\]"):
        load_policy(load_settings())
    (hearth_home / "policy.toml").write_text("commercial = \n")
    with pytest.raises(UserInputError, match="fix or remove"):
        load_policy(load_settings())


def test_allow_and_deny_must_not_overlap(hearth_home: Path) -> None:
    settings = load_settings()
    save_policy(settings, Policy(allow=("mit",)))
    with pytest.raises(UserInputError, match="allow and deny both list"):
        set_policy_value(settings, "deny", "mit")


def test_policy_is_reread_only_when_the_file_changes(hearth_home: Path) -> None:
    settings = load_settings()
    set_policy_value(settings, "commercial", "true")
    first = load_policy(settings)
    assert load_policy(settings) is first  # unchanged file: the cached policy, no parsing
    # edited in place by hand (same inode): the new mtime/size is noticed
    path = policy_path(settings)
    path.write_text("commercial = false\nmonthly_active_users = 7\n")
    assert load_policy(settings) == Policy(commercial=False, monthly_active_users=7)
    path.unlink()
    assert load_policy(settings) == Policy()
