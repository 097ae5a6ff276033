"""The use policy: `$HEARTH_HOME/policy.toml`, the organisation's statement of how it
intends to use models (commercially? for how many users? may outputs train other
models?) plus license ids it always allows or denies. Reading, validating, writing and
setting one key. Knows nothing of models, the database or how the check is made."""

from __future__ import annotations

import os
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from hearth.config import Settings
from hearth.errors import UserInputError
from hearth.licenses.facts import all_facts
from hearth.licenses.normalize import normalize_license

UnknownRule = Literal["warn", "deny"]
POLICY_FILE = "policy.toml"


@dataclass(frozen=True)
class Policy:
    """Intended use. The defaults describe non-commercial use that does not train other
    models, with unidentified licenses only warned about."""

    commercial: bool = False
    monthly_active_users: int = 0
    allow: tuple[str, ...] = ()  # license ids cleared by the organisation (e.g. a bought license)
    deny: tuple[str, ...] = ()  # license ids never to be used
    unknown: UnknownRule = "warn"
    train_other_models: bool = False

    def __post_init__(self) -> None:
        if self.monthly_active_users < 0:
            raise ValueError(f"monthly_active_users must be >= 0, got {self.monthly_active_users}")
        if self.unknown not in ("warn", "deny"):
            raise ValueError(f"unknown must be \"warn\" or \"deny\", got {self.unknown!r}")
        known = all_facts()
        for name in ("allow", "deny"):
            for license_id in getattr(self, name):
                if license_id not in known:
                    raise ValueError(
                        f"{name}: {license_id!r} is not a license id; known: {', '.join(known)}"
                    )
        both = set(self.allow) & set(self.deny)
        if both:
            raise ValueError(f"allow and deny both list {sorted(both)}; remove them from one")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in fields(self)}


def policy_path(settings: Settings) -> Path:
    return settings.home / POLICY_FILE


def _license_ids(name: str, raw: Any) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple):
        raise ValueError(f"{name} must be a list of license ids, got {raw!r}")
    ids = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        # "unknown" is a valid entry (allow or deny unidentified licenses); aliases map to ids
        license_id = "unknown" if text.lower() == "unknown" else normalize_license(text)
        if license_id == "unknown" and text.lower() != "unknown":
            raise ValueError(f"{name}: {text!r} is not a license id; known: {', '.join(all_facts())}")
        ids.append(license_id)
    return tuple(dict.fromkeys(ids))


def _bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def _int(name: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"{name} must be a whole number, got {raw!r}")
    if isinstance(raw, int):
        return raw
    text = str(raw).strip().lower().replace("_", "").replace(",", "")
    scale = {"k": 1_000, "m": 1_000_000, "b": 1_000_000_000}.get(text[-1:], 1)
    try:
        return int(float(text[:-1]) * scale) if scale != 1 else int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number such as 5000 or 2M, got {raw!r}") from None


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "commercial": _bool,
    "monthly_active_users": _int,
    "allow": _license_ids,
    "deny": _license_ids,
    "unknown": lambda name, raw: str(raw).strip().lower(),
    "train_other_models": _bool,
}
KEYS = tuple(_PARSERS)


def policy_from_dict(data: dict[str, Any], where: str = POLICY_FILE) -> Policy:
    """A Policy from parsed TOML (or any mapping); UserInputError naming `where` and the key."""
    unknown = set(data) - set(KEYS)
    if unknown:
        raise UserInputError(f"{where}: unknown key(s) {sorted(unknown)}; known: {', '.join(KEYS)}")
    try:
        return Policy(**{k: _PARSERS[k](k, v) for k, v in data.items()})
    except ValueError as exc:
        raise UserInputError(f"{where}: {exc}; fix it with `hearth policy set KEY VALUE`") from exc


PolicyStamp = tuple[int, int, int] | None


def policy_stamp(settings: Settings) -> PolicyStamp:
    """What changes whenever the policy file does (inode, mtime, size; None: no file). One
    stat: cheap enough for every request of a server (save_policy replaces the file, so the
    inode changes even where mtimes are coarse)."""
    try:
        st = policy_path(settings).stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


# the last policy read per file, with its stamp: a server checks the policy per request
# and re-reads the file only when it changed (a process-wide cache, keyed by path)
_CACHE: dict[Path, tuple[PolicyStamp, Policy]] = {}


def load_policy(settings: Settings) -> Policy:
    """The policy in `$HEARTH_HOME/policy.toml`; the default Policy when there is no file."""
    path = policy_path(settings)
    stamp = policy_stamp(settings)
    if stamp is None:
        return Policy()
    cached = _CACHE.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"{path}: {exc}; fix or remove the file") from exc
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{path}: not a readable TOML file ({exc}); fix or remove it") from exc
    policy = policy_from_dict(data, str(path))
    _CACHE[path] = (stamp, policy)
    return policy


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def dump_policy(policy: Policy) -> str:
    lines = ["# hearth use policy: `hearth policy show` explains it, `hearth policy set KEY VALUE` edits it"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in policy.to_dict().items()]
    return "\n".join(lines) + "\n"


def save_policy(settings: Settings, policy: Policy) -> Path:
    """Write the policy atomically (a reader never sees half a file)."""
    path = policy_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".policy-", suffix=".toml", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(dump_policy(policy))
    os.replace(tmp, path)
    return path


def set_policy_value(settings: Settings, key: str, value: str) -> Policy:
    """Parse `value` for `key` (booleans, 2M-style numbers, comma-separated license ids),
    validate, save and return the new policy."""
    if key not in _PARSERS:
        raise UserInputError(f"unknown policy key {key!r}; known: {', '.join(KEYS)}")
    current = load_policy(settings)
    try:
        updated = replace(current, **{key: _PARSERS[key](key, value)})
    except ValueError as exc:
        raise UserInputError(str(exc)) from exc
    save_policy(settings, updated)
    return updated
