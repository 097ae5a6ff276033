"""`hearth embed MODEL TEXT|-`: the embedding of one text (from the argument or stdin) as a
JSON array on stdout, as `ollama embed`-style tools print it. Parses, calls
`LLM.embed`, prints."""

from __future__ import annotations

import json
import sys

import typer


def register(app: typer.Typer) -> None:
    @app.command("embed")
    def embed(
        model: str = typer.Argument(
            ..., help="An embedding model in the store (e.g. all-minilm) or its folder."
        ),
        text: str = typer.Argument(..., help="The text to embed ('-' reads stdin)."),
        truncate: bool = typer.Option(
            False, "--truncate", help="Cut a text longer than the model takes instead of failing."
        ),
        dimensions: int | None = typer.Option(
            None, "--dimensions", help="Keep the first N values (renormalised)."
        ),
        accept_license: bool = typer.Option(
            False, "--accept-license", help="Record your acceptance of the model's license terms."
        ),
    ) -> None:
        """Print a text's embedding as a JSON array."""
        from hearth.cli.output import Output
        from hearth.engine.llm import LLM

        if text == "-":
            text = sys.stdin.read()
        llm = LLM(model, accept_license=accept_license, license_use="run")
        for warning in llm.license_warnings:
            Output.warning(warning)
        (vector,) = llm.embed([text], truncate=truncate, dimensions=dimensions)
        sys.stdout.write(json.dumps(vector) + "\n")
