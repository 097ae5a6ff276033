"""`hearth ps` and `hearth stop MODEL` (Ollama's verbs) against a running `hearth serve`:
what is loaded, and unload a model now. Talks to the server over its Ollama API (GET /api/ps;
stop = /api/generate with keep_alive 0, as `ollama stop` does). Parses, calls, prints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import typer
from rich.table import Table

from hearth.cli.output import Output
from hearth.errors import HearthError, NotFoundError, UserInputError

_URL_HELP = "The server (default: http://HOST:PORT from hearth's settings)."
_KEY_HELP = "API key, when the server requires one."


def _base_url(url: str | None) -> str:
    if url:
        return url.rstrip("/")
    from hearth.config import load_settings

    settings = load_settings()
    # a server bound to every address is reached on loopback
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}"


def _call(method: str, url: str, path: str, api_key: str | None, **kwargs: Any) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.request(method, url + path, headers=headers, timeout=600, **kwargs)
    except httpx.HTTPError as exc:
        raise HearthError(
            f"no hearth server answers at {url} ({exc}); start one with `hearth serve`, or "
            "point --url at it"
        ) from exc
    if response.status_code == 401:
        raise UserInputError(f"the server at {url} needs an API key: pass --api-key KEY")
    if response.status_code >= 400:
        raise HearthError(f"{url}{path}: HTTP {response.status_code}: {response.text[:300]}")
    return response.json()


def _until(expires_at: str) -> str:
    try:
        when = datetime.fromisoformat(expires_at)
    except ValueError:
        return expires_at
    if when.year >= 9999 or when.year <= 1:
        return "Forever"
    return f"{when:%Y-%m-%d %H:%M:%S}"


def _kv_cache(kv: Any) -> str:
    """The model's KV pool: its memory and how many tokens it holds (a server without the
    field, e.g. Ollama: blank)."""
    if not isinstance(kv, dict) or "bytes" not in kv:
        return ""
    return f"{kv['bytes'] / 1e6:.0f} MB, {kv.get('tokens', 0):,} tok"


def ps(
    ctx: typer.Context,
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
    api_key: str | None = typer.Option(None, "--api-key", help=_KEY_HELP),
    json_flag: bool = typer.Option(False, "--json", help="JSON output."),
) -> None:
    """List the models a running server has loaded (like `ollama ps`)."""
    base = _base_url(url)
    models = _call("GET", base, "/api/ps", api_key)["models"]
    out = Output.of(ctx, json_flag)
    if out.json:
        out.emit_json(models)
        return
    if not models:
        typer.echo(f"no models loaded at {base}")
        return
    table = Table("NAME", "ID", "SIZE", "CONTEXT", "KV CACHE", "UNTIL", box=None)
    for m in models:
        size = f"{m.get('size', 0) / 1e6:.1f} MB"
        table.add_row(
            m["name"], m["digest"][:12], size, str(m.get("context_length", "")),
            _kv_cache(m.get("kv_cache")), _until(m.get("expires_at", "")),
        )
    out.console.print(table)


def stop(
    model: str = typer.Argument(..., help="A model the server has loaded (see `hearth ps`)."),
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
    api_key: str | None = typer.Option(None, "--api-key", help=_KEY_HELP),
) -> None:
    """Unload a model from a running server now (like `ollama stop`)."""
    base = _base_url(url)
    loaded = _call("GET", base, "/api/ps", api_key)["models"]
    names = {m["name"] for m in loaded} | {m["name"].removesuffix(":latest") for m in loaded}
    if model not in names:
        running = ", ".join(m["name"] for m in loaded) or "none"
        raise NotFoundError(f"model '{model}' is not running at {base}; running: {running}")
    _call("POST", base, "/api/generate", api_key, json={"model": model, "keep_alive": 0})
    typer.echo(f"stopped '{model}'")


def register(app: typer.Typer) -> None:
    app.command("ps")(ps)
    app.command("stop")(stop)


__all__ = ["register"]
