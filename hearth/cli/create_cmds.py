"""Verbs that make new store models from others: `hearth create NAME -f Modelfile` (Ollama's
Modelfile) and `hearth quantize SRC --type T` (a GGUF file llama.cpp loads). Parses, calls
`hearth.store`, prints."""

from __future__ import annotations

from pathlib import Path

import typer

from hearth.cli.output import Output
from hearth.errors import UserInputError


def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The new model's name, e.g. mymodel:latest."),
    file: Path = typer.Option(
        Path("Modelfile"), "--file", "-f", help="The Modelfile (Ollama's format)."
    ),
) -> None:
    """Create a model from a Modelfile: FROM, ADAPTER, TEMPLATE, SYSTEM, PARAMETER,
    MESSAGE, LICENSE. The base's files are shared, not copied."""
    from hearth.cli.store_cmds import _store
    from hearth.store.modelfile import parse

    out = Output.of(ctx, False)
    try:
        text = file.read_text()
    except OSError as exc:
        raise UserInputError(f"cannot read the Modelfile {file} ({exc.strerror})") from None
    record = _store().create(name, parse(text), file.resolve().parent)
    if out.json:
        out.emit_json(record.summary())
        return
    out.console.print(f"created {record.name} ({record.digest[:19]})", highlight=False)


def quantize(
    ctx: typer.Context,
    src: str = typer.Argument(..., help="A stored model, a GGUF file or an HF folder."),
    type_name: str = typer.Option(
        ..., "--type", "-t", help="Q8_0, Q4_0, Q4_1, Q4_K_M, Q5_K_M or Q6_K."
    ),
    name: str | None = typer.Option(None, "--name", help="The new model's name."),
    allow_requantize: bool = typer.Option(
        False, "--allow-requantize", help="Quantize an already quantized source (lossy)."
    ),
) -> None:
    """Quantize a model to a GGUF file llama.cpp loads, stored as a new model."""
    from functools import partial

    from hearth.cli.store_cmds import _store
    from hearth.store.quantize import quantize_model
    from hearth.weights.gguf_quantize import FILE_TYPES, quantize_source

    out = Output.of(ctx, False)
    if type_name.upper() not in FILE_TYPES:  # before anything is read
        raise UserInputError(
            f"unknown quantization type '{type_name}'; use one of {', '.join(FILE_TYPES)}"
        )
    write = partial(quantize_source, type_name=type_name, allow_requantize=allow_requantize)
    record = quantize_model(_store(), src, type_name, name, write)
    if out.json:
        out.emit_json(record.summary())
        return
    out.console.print(
        f"quantized {src} to {record.name} ({record.quantization}, {record.size:,} bytes)",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("create")(create)
    app.command("quantize")(quantize)
