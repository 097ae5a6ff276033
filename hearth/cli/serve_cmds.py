"""Server verbs: `hearth serve [MODEL...]` and `hearth keys create|list|revoke`. Parses,
calls `hearth.serve`, prints. The server is imported inside each verb so `hearth --help`
stays fast."""

from __future__ import annotations

import typer
from rich.table import Table

from hearth.cli.output import Output
from hearth.config import DEFAULT_PORT
from hearth.model.quant_modes import DEFAULT_QUANT, QUANT_HELP

keys_app = typer.Typer(
    help="API keys for `hearth serve` (stored hashed; shown once).", no_args_is_help=True
)


def serve(
    ctx: typer.Context,
    models: list[str] = typer.Argument(None, help="Models to load (and keep loaded) at startup."),
    host: str = typer.Option(
        None,
        "--host",
        help="Address to listen on (default 127.0.0.1; anything else needs an API key).",
    ),
    port: int = typer.Option(None, "--port", help=f"Port (default {DEFAULT_PORT})."),
    keep_alive: float = typer.Option(
        None, "--keep-alive", help="Seconds an idle model stays loaded (default 300; -1 = forever)."
    ),
    max_loaded_models: int = typer.Option(
        None,
        "--max-loaded-models",
        help="Most models loaded at once; the least recently used idle one unloads.",
    ),
    memory_budget_gb: float = typer.Option(
        None, "--memory-budget-gb", help="Unload idle models to stay under this (0 = no budget)."
    ),
    kv_cache_gb: float = typer.Option(None, "--kv-cache-gb", help="KV cache per model."),
    quant: str = typer.Option(
        None, "--quant", help=f"Weights in memory: {QUANT_HELP}. Default: {DEFAULT_QUANT}."
    ),
    ctx_len: int = typer.Option(
        None,
        "--ctx",
        help="Context length per model (default: the model's, capped by the KV cache).",
    ),
    max_queue: int = typer.Option(
        None, "--max-queue", help="Requests that may wait beyond the running ones before 503."
    ),
    rate_limit: int = typer.Option(
        None, "--rate-limit", help="Requests per minute per API key (0 = no limit)."
    ),
    max_body_mb: float = typer.Option(None, "--max-body-mb", help="Largest request body."),
    cors: list[str] = typer.Option(
        None,
        "--cors-origin",
        help="Allow browser pages from this "
        "origin (repeat for several; CORS is closed by default).",
    ),
    tensor_parallel: int = typer.Option(
        None,
        "--tensor-parallel",
        help="Split each model's weights over this many processes (torch.distributed, gloo; "
        "dense weights).",
    ),
    nnodes: int = typer.Option(
        None,
        "--nnodes",
        help="Hosts the --tensor-parallel ranks run on; the others run `hearth tp-worker` "
        "(MASTER_ADDR / MASTER_PORT as torchrun).",
    ),
    ollama_port: bool = typer.Option(
        False,
        "--ollama-port",
        help="Also answer on Ollama's port (11434, HEARTH_OLLAMA_PORT) when no other server "
        "holds it, so Ollama clients find hearth unchanged.",
    ),
) -> None:
    """Serve models over an OpenAI-compatible (/v1) and Ollama-compatible (/api) HTTP API."""
    from hearth.config import load_settings
    from hearth.serve.options import MIB, ServeOptions
    from hearth.serve.server import serve as run

    settings = load_settings()
    options = ServeOptions.from_settings(
        settings,
        host=host,
        port=port,
        keep_alive_s=keep_alive,
        max_loaded_models=max_loaded_models,
        memory_budget_gb=memory_budget_gb,
        kv_cache_gb=kv_cache_gb,
        quant=quant,
        max_model_len=ctx_len,
        max_queue=max_queue,
        rate_limit_per_minute=rate_limit,
        max_body_bytes=int(max_body_mb * MIB) if max_body_mb else None,
        cors_origins=tuple(cors) if cors else None,
        ollama_port=settings.ollama_port if ollama_port else None,
        tensor_parallel=tensor_parallel,
        nnodes=nnodes,
    )
    run(settings, options, models or [], echo=typer.echo)


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A name for the key."),
    json_flag: bool = typer.Option(False, "--json"),
) -> None:
    """Create an API key; its secret is printed once and never stored."""
    from hearth.config import load_settings
    from hearth.serve.keys import create_key

    key, secret = create_key(load_settings(), name)
    out = Output.of(ctx, json_flag)
    if out.json:
        out.emit_json({**key.summary(), "key": secret})
        return
    typer.echo(secret)
    typer.echo(
        f"created key '{key.name}'; copy it now, it is not shown again "
        "(clients send `Authorization: Bearer KEY`)",
        err=True,
    )


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    json_flag: bool = typer.Option(False, "--json"),
    all_keys: bool = typer.Option(False, "--all", help="Include revoked keys."),
) -> None:
    """List API keys (names and prefixes; secrets are never stored)."""
    from hearth.config import load_settings
    from hearth.serve.keys import list_keys

    keys = list_keys(load_settings(), include_revoked=all_keys)
    out = Output.of(ctx, json_flag)
    if out.json:
        out.emit_json([k.summary() for k in keys])
        return
    table = Table("name", "prefix", "created", "status")
    for k in keys:
        status = "active" if k.active else f"revoked {k.revoked:%Y-%m-%d %H:%M}"
        table.add_row(k.name, k.prefix + "…", f"{k.created:%Y-%m-%d %H:%M}", status)
    out.console.print(table)


@keys_app.command("revoke")
def keys_revoke(name: str = typer.Argument(..., help="The key's name.")) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    from hearth.config import load_settings
    from hearth.serve.keys import revoke_key

    key = revoke_key(load_settings(), name)
    typer.echo(f"revoked key '{key.name}' ({key.prefix}…)")


def tp_worker(
    model: str = typer.Argument(..., help="The model rank 0 serves (a store name or a path)."),
    tensor_parallel: int = typer.Option(..., "--tensor-parallel", help="Ranks in all."),
    nnodes: int = typer.Option(..., "--nnodes", help="Hosts the ranks run on."),
    node_rank: int = typer.Option(..., "--node-rank", help="This host's index (1..nnodes-1)."),
) -> None:
    """Run this host's share of a tensor-parallel model served from another host (meets
    rank 0 at MASTER_ADDR:MASTER_PORT, as torchrun's workers do)."""
    from hearth.config import load_settings
    from hearth.engine.llm import resolve_model
    from hearth.engine.tensor_parallel import TPConfig, run_node

    settings = load_settings()
    tp = TPConfig(tensor_parallel, nnodes, settings.master_addr, settings.master_port)
    path, _ = resolve_model(model, settings)
    run_node(path, tp, node_rank, settings.threads)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("tp-worker")(tp_worker)
    app.add_typer(keys_app, name="keys")


__all__ = ["register"]
