"""License verbs: `hearth license NAME` (a stored model's license facts, signals, chain and
what the policy says; or a license id's facts) and `hearth policy show|set`. Parses, calls
`hearth.licenses` (and the store to find a model), prints."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from hearth.cli.output import Output

if TYPE_CHECKING:
    from hearth.config import Settings
    from hearth.licenses import LicenseDetection, LicenseFacts

# facts shown, in order, with their labels
_ROWS = [
    ("commercial_use", "commercial use"),
    ("commercial_clause", "  clause"),
    ("user_cap", "user cap (MAU)"),
    ("outputs_may_train_other_models", "outputs may train other models"),
    ("outputs_note", "  note"),
    ("derivative_obligations", "derivatives"),
    ("attribution", "attribution / naming"),
    ("acceptable_use_policy", "acceptable use policy"),
    ("redistribution", "redistribution"),
    ("source_url", "license text"),
]
_DETECTION_ONLY = ("aliases", "link_patterns", "fingerprints")


def _lookup(settings: Settings, name: str) -> tuple[dict[str, Any] | None, LicenseDetection]:
    """(model summary or None, detection) for a stored model name or, failing that, a
    license id or alias."""
    from hearth.errors import InvalidNameError, ModelNotFoundError, NotFoundError
    from hearth.licenses import LicenseDetection, all_facts, normalize_license
    from hearth.licenses.detect import detection_from_stored
    from hearth.store import Store

    try:
        record = Store(settings).get(name)
    except (NotFoundError, InvalidNameError):
        license_id = normalize_license(name)
        if license_id == "unknown" and name.strip().lower() not in ("unknown", "other"):
            raise ModelNotFoundError(
                name,
                f"'{name}' is neither a stored model nor a license id; `hearth list` shows "
                f"the models, and the license ids are: {', '.join(all_facts())}",
            ) from None
        return None, LicenseDetection(license_id)
    detection = detection_from_stored(record.license_id, record.license_signals)
    return {"name": record.name, "digest": record.digest}, detection


def _verdict(settings: Settings, detection: LicenseDetection, digest: str | None) -> dict[str, Any]:
    """What the current policy says about each use, without recording anything."""
    from hearth.errors import PolicyError
    from hearth.licenses.acceptances import accepted_license_ids
    from hearth.licenses.check import USES, check_use
    from hearth.licenses.policy import load_policy

    policy = load_policy(settings)
    accepted = accepted_license_ids(settings, digest) if digest else frozenset()
    verdict: dict[str, Any] = {}
    for use in USES:
        try:
            decision = check_use(detection, policy, use, accepted)
            verdict[use] = {"allowed": True, "basis": decision.basis}
        except PolicyError as exc:
            verdict[use] = {"allowed": False, "clause": exc.clause, "remedy": exc.remedy}
    return verdict


def _facts_dict(facts: LicenseFacts) -> dict[str, Any]:
    return {k: v for k, v in facts.to_dict().items() if k not in _DETECTION_ONLY}


def _print_license(
    out: Output, model: dict[str, Any] | None, detection: LicenseDetection, verdict: dict[str, Any]
) -> None:
    from hearth.licenses import format_chain

    facts = detection.facts
    title = f"{model['name']}: " if model else ""
    out.console.print(f"{title}{facts.id} — {facts.name}", highlight=False, markup=False)
    out.console.print(f"  {facts.summary}\n", highlight=False, markup=False)
    table = Table(show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # URLs must stay whole, not end in "…"
    for key, label in _ROWS:
        value = getattr(facts, key)
        if key == "user_cap":
            value = f"{value:,}" if value else "none"
        table.add_row(label, str(value) if value not in ("", None) else "-")
    out.console.print(table)
    if detection.signals:
        out.console.print("\nsignals", highlight=False)
        for s in detection.signals:
            out.console.print(
                f"  {s.source}: {s.license_id} ({s.raw})", highlight=False, markup=False
            )
        if detection.conflict:
            out.console.print(
                f"  conflict: {detection.describe_conflict()}", highlight=False, markup=False
            )
    if detection.chain and model:
        out.console.print(
            f"\nchain\n  {format_chain(detection.chain, model['name'], facts.id)}",
            highlight=False,
            markup=False,
        )
    out.console.print("\nunder the current policy", highlight=False)
    for use, v in verdict.items():
        line = (
            f"  {use}: allowed ({v['basis']})"
            if v["allowed"]
            else (f"  {use}: REFUSED — {v['clause']} To allow it: {v['remedy']}")
        )
        out.console.print(line, highlight=False, markup=False)


def license_(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A stored model (smollm2) or a license id (llama3.1)."),
    json_flag: bool = typer.Option(False, "--json", help="JSON output."),
) -> None:
    """Show a model's license: the facts, the signals it was detected from, and whether
    the current policy allows pulling, running, serving and fine-tuning it."""
    from hearth.config import load_settings

    out = Output.of(ctx, json_flag)
    settings = load_settings()
    model, detection = _lookup(settings, name)
    verdict = _verdict(settings, detection, model["digest"] if model else None)
    if out.json:
        out.emit_json(
            {
                "model": model,
                **detection.to_dict(),
                "facts": _facts_dict(detection.facts),
                "policy": verdict,
            }
        )
        return
    _print_license(out, model, detection, verdict)


def policy_show(
    ctx: typer.Context,
    json_flag: bool = typer.Option(False, "--json", help="JSON output."),
) -> None:
    """Show the policy and the license acceptances on record."""
    from hearth.config import load_settings
    from hearth.licenses.acceptances import list_acceptances
    from hearth.licenses.policy import load_policy, policy_path

    out = Output.of(ctx, json_flag)
    settings = load_settings()
    policy = load_policy(settings)
    path = policy_path(settings)
    acceptances = list_acceptances(settings)
    if out.json:
        out.emit_json(
            {
                "path": str(path),
                "exists": path.is_file(),
                "policy": policy.to_dict(),
                "acceptances": [
                    {
                        "model_digest": a.model_digest,
                        "license_id": a.license_id,
                        "user": a.user,
                        "accepted_at": a.accepted_at.isoformat(),
                        "use": a.use,
                    }
                    for a in acceptances
                ],
            }
        )
        return
    where = str(path) if path.is_file() else f"{path} (not written yet: defaults)"
    out.console.print(f"policy: {where}", highlight=False, markup=False)
    table = Table(show_header=False, box=None)
    for key, value in policy.to_dict().items():
        shown = json.dumps(value) if not isinstance(value, str) else value
        table.add_row(key, shown)
    out.console.print(table)
    if acceptances:
        out.console.print("\naccepted licenses", highlight=False)
        for a in acceptances:
            out.console.print(
                f"  {a.license_id} for {a.model_digest.removeprefix('sha256:')[:12]} by "
                f"{a.user} at {a.accepted_at:%Y-%m-%d %H:%M} UTC ({a.use})",
                highlight=False,
                markup=False,
            )


def policy_set(
    ctx: typer.Context,
    key: str = typer.Argument(
        ...,
        help="commercial, monthly_active_users, allow, deny, unknown or train_other_models.",
    ),
    value: str = typer.Argument(
        ...,
        help='true/false, a number (2M), warn/deny, or comma-separated license ids ("" clears).',
    ),
) -> None:
    """Change one policy key and save policy.toml."""
    from hearth.config import load_settings
    from hearth.licenses.policy import policy_path, set_policy_value

    out = Output.of(ctx)
    settings = load_settings()
    policy = set_policy_value(settings, key, value)
    if out.json:
        out.emit_json(policy.to_dict())
        return
    shown = getattr(policy, key)
    out.console.print(
        f"{key} = {json.dumps(list(shown) if isinstance(shown, tuple) else shown)} "
        f"(saved to {policy_path(settings)})",
        highlight=False,
        markup=False,
    )


def register(app: typer.Typer) -> None:
    app.command("license")(license_)
    policy_app = typer.Typer(
        help="Show or change the license use policy ($HEARTH_HOME/policy.toml).",
        no_args_is_help=True,
    )
    app.add_typer(policy_app, name="policy")
    policy_app.command("show")(policy_show)
    policy_app.command("set")(policy_set)
