"""Server verbs: `hearth serve [MODEL...]` and `hearth keys create|list|revoke`. Parses,
calls `hearth.serve`, prints. The server is imported inside each verb so `hearth --help`
stays fast."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from hearth.cli.output import Output
from hearth.config import DEFAULT_PORT
from hearth.engine.engine_config import SPECULATIVE_HELP, check_speculative
from hearth.errors import UserInputError
from hearth.model.quant_modes import DEFAULT_QUANT, QUANT_HELP

if TYPE_CHECKING:
    from hearth.serve.replicas.options import ReplicaOptions

keys_app = typer.Typer(
    help="API keys for `hearth serve` (stored hashed; shown once).", no_args_is_help=True
)


# the options of this command, declared once so its signature stays short
_ModelsArg = Annotated[
    list[str] | None, typer.Argument(help="Models to load (and keep loaded) at startup.")
]
_HostOpt = Annotated[
    str | None,
    typer.Option(
        "--host", help="Address to listen on (default 127.0.0.1; anything else needs an API key)."
    ),
]
_PortOpt = Annotated[int | None, typer.Option("--port", help=f"Port (default {DEFAULT_PORT}).")]
_KeepAliveOpt = Annotated[
    float | None,
    typer.Option(
        "--keep-alive", help="Seconds an idle model stays loaded (default 300; -1 = forever)."
    ),
]
_MaxLoadedModelsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-loaded-models",
        help="Most models loaded at once; the least recently used idle one unloads.",
    ),
]
_MemoryBudgetGbOpt = Annotated[
    float | None,
    typer.Option(
        "--memory-budget-gb", help="Unload idle models to stay under this (0 = no budget)."
    ),
]
_KvCacheGbOpt = Annotated[float | None, typer.Option("--kv-cache-gb", help="KV cache per model.")]
_QuantOpt = Annotated[
    str | None,
    typer.Option("--quant", help=f"Weights in memory: {QUANT_HELP}. Default: {DEFAULT_QUANT}."),
]
_CtxLenOpt = Annotated[
    int | None,
    typer.Option(
        "--ctx", help="Context length per model (default: the model's, capped by the KV cache)."
    ),
]
_SpeculativeOpt = Annotated[
    str | None, typer.Option("--speculative", help=SPECULATIVE_HELP + " Default: off.")
]
_DraftOpt = Annotated[
    str | None,
    typer.Option(
        "--draft",
        help="The draft model of --speculative draft for every model served (a store name "
        "or a path; it must share each model's tokenizer). Given alone, it sets draft.",
    ),
]
_MaxQueueOpt = Annotated[
    int | None,
    typer.Option("--max-queue", help="Requests that may wait beyond the running ones before 503."),
]
_RateLimitOpt = Annotated[
    int | None, typer.Option("--rate-limit", help="Requests per minute per API key (0 = no limit).")
]
_MaxBodyMbOpt = Annotated[float | None, typer.Option("--max-body-mb", help="Largest request body.")]
_CorsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--cors-origin",
        help="Allow browser pages from this origin (repeat for several; CORS is closed by default).",
    ),
]
_LoraOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--lora",
        help="A LoRA adapter served by name on the first MODEL: NAME=PATH (a PEFT folder or a GGUF LoRA file); repeat for several. Requests select it with model=NAME.",
    ),
]
_MaxLorasOpt = Annotated[
    int | None,
    typer.Option("--max-loras", help="LoRA adapters resident per model at once (default 4)."),
]
_MaxLoraRankOpt = Annotated[
    int | None, typer.Option("--max-lora-rank", help="The largest LoRA rank served (default 16).")
]
_TensorParallelOpt = Annotated[
    int | None,
    typer.Option(
        "--tensor-parallel",
        help="Split each model's weights over this many processes (torch.distributed, gloo; dense weights).",
    ),
]
_PipelineParallelOpt = Annotated[
    int | None,
    typer.Option(
        "--pipeline-parallel",
        help="Split each model's decoder layers over this many processes, in stages (torch.distributed, gloo; dense weights).",
    ),
]
_NnodesOpt = Annotated[
    int | None,
    typer.Option(
        "--nnodes",
        help="Hosts the --tensor-parallel / --pipeline-parallel ranks run on; the others run `hearth tp-worker` (MASTER_ADDR / MASTER_PORT as torchrun).",
    ),
]
_OllamaPortOpt = Annotated[
    bool,
    typer.Option(
        "--ollama-port",
        help="Also answer on Ollama's port (11434, HEARTH_OLLAMA_PORT) when no other server holds it, so Ollama clients find hearth unchanged.",
    ),
]
_ReplicasOpt = Annotated[
    int | None,
    typer.Option(
        "--replicas",
        help="Run each chat model as this many engine replicas on Ray Serve, routed by prompt prefix (needs hearth[ray]; docs/scale.md).",
    ),
]
_MinReplicasOpt = Annotated[
    int | None,
    typer.Option("--min-replicas", help="Autoscale replicas on queue depth down to this."),
]
_MaxReplicasOpt = Annotated[
    int | None, typer.Option("--max-replicas", help="Autoscale replicas on queue depth up to this.")
]
_RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="An existing Ray cluster (HOST:PORT, ray://HOST:PORT or auto); default: a local Ray on 127.0.0.1.",
    ),
]
_ReplicaThreadsOpt = Annotated[
    int | None, typer.Option("--replica-threads", help="CPU threads per replica (default 1).")
]
_RoutingOpt = Annotated[
    str | None, typer.Option("--routing", help="Replica routing: prefix (default) or random.")
]


def serve(
    ctx: typer.Context,
    models: _ModelsArg = None,
    host: _HostOpt = None,
    port: _PortOpt = None,
    keep_alive: _KeepAliveOpt = None,
    max_loaded_models: _MaxLoadedModelsOpt = None,
    memory_budget_gb: _MemoryBudgetGbOpt = None,
    kv_cache_gb: _KvCacheGbOpt = None,
    quant: _QuantOpt = None,
    ctx_len: _CtxLenOpt = None,
    speculative: _SpeculativeOpt = None,
    draft: _DraftOpt = None,
    max_queue: _MaxQueueOpt = None,
    rate_limit: _RateLimitOpt = None,
    max_body_mb: _MaxBodyMbOpt = None,
    cors: _CorsOpt = None,
    lora: _LoraOpt = None,
    max_loras: _MaxLorasOpt = None,
    max_lora_rank: _MaxLoraRankOpt = None,
    tensor_parallel: _TensorParallelOpt = None,
    pipeline_parallel: _PipelineParallelOpt = None,
    nnodes: _NnodesOpt = None,
    ollama_port: _OllamaPortOpt = False,
    replicas: _ReplicasOpt = None,
    min_replicas: _MinReplicasOpt = None,
    max_replicas: _MaxReplicasOpt = None,
    ray_address: _RayAddressOpt = None,
    replica_threads: _ReplicaThreadsOpt = None,
    routing: _RoutingOpt = None,
) -> None:
    """Serve models over an OpenAI-compatible (/v1) and Ollama-compatible (/api) HTTP API."""
    from hearth.config import load_settings
    from hearth.serve.options import MIB, ServeOptions
    from hearth.serve.server import serve as run

    settings = load_settings()
    loras = _lora_options(lora or [], models or [])
    _check_split(tensor_parallel, pipeline_parallel)
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
        speculative=check_speculative(speculative) if speculative else ("draft" if draft else None),
        draft_model=draft,
        max_queue=max_queue,
        rate_limit_per_minute=rate_limit,
        max_body_bytes=int(max_body_mb * MIB) if max_body_mb else None,
        cors_origins=tuple(cors) if cors else None,
        ollama_port=settings.ollama_port if ollama_port else None,
        loras=loras,
        max_loras=max_loras,
        max_lora_rank=max_lora_rank,
        tensor_parallel=tensor_parallel,
        pipeline_parallel=pipeline_parallel,
        nnodes=nnodes,
    )
    scale = replica_options(
        replicas, min_replicas, max_replicas, ray_address, replica_threads, routing
    )
    split = "--tensor-parallel" if options.tensor_parallel > 1 else "--pipeline-parallel"
    if scale is not None and max(options.tensor_parallel, options.pipeline_parallel) > 1:
        raise UserInputError(
            f"--replicas with {split} is not supported yet: each replica would need its own "
            "split model; use one of them"
        )
    run(settings, options, models or [], echo=typer.echo, replicas=scale)


def _check_split(tensor_parallel: int | None, pipeline_parallel: int | None) -> None:
    """The split flags' bad values as usage errors (exit 2) naming the flag."""
    for flag, value in (
        ("--tensor-parallel", tensor_parallel),
        ("--pipeline-parallel", pipeline_parallel),
    ):
        if value is not None and value < 1:
            raise UserInputError(f"{flag} must be >= 1, got {value}")
    if (tensor_parallel or 1) > 1 and (pipeline_parallel or 1) > 1:
        raise UserInputError(
            "--tensor-parallel and --pipeline-parallel do not combine yet; split the model "
            "one way: --tensor-parallel N (heads) or --pipeline-parallel N (layers)"
        )


def replica_options(
    replicas: int | None,
    min_replicas: int | None,
    max_replicas: int | None,
    ray_address: str | None,
    threads: int | None,
    routing: str | None,
) -> ReplicaOptions | None:
    """ReplicaOptions from the replica flags (None: none given, the engines run here); a bad
    combination is a usage error (exit 2) that names the flag."""
    given = (replicas, min_replicas, max_replicas, ray_address, threads, routing)
    if all(v is None for v in given):
        return None
    from hearth.serve.replicas.options import ReplicaOptions

    if replicas is None:
        replicas = min_replicas or 1
    values = {
        "num_replicas": replicas,
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "ray_address": ray_address,
        "threads_per_replica": threads,
        "routing": routing,
    }
    try:
        return ReplicaOptions(**{k: v for k, v in values.items() if v is not None})  # type: ignore[arg-type]
    except ValueError as exc:
        fields = r"\b(min_replicas|max_replicas|threads_per_replica|routing|replicas)\b"
        message = re.sub(fields, lambda m: _FLAGS[m.group(1)], str(exc))
        raise UserInputError(f"{message} (see `hearth serve --help`)") from None


# ReplicaOptions' fields by the flags that set them (its errors name fields)
_FLAGS = {
    "replicas": "--replicas",
    "min_replicas": "--min-replicas",
    "max_replicas": "--max-replicas",
    "threads_per_replica": "--replica-threads",
    "routing": "--routing",
}


def _lora_options(given: list[str], models: list[str]) -> tuple[tuple[str, str, str], ...]:
    """--lora NAME=PATH ... as (name, path, base): they run on the first MODEL."""
    from hearth.errors import UserInputError
    from hearth.serve.served_adapters import parse_lora_option

    if given and not models:
        raise UserInputError("--lora needs the base model: hearth serve MODEL --lora NAME=PATH")
    return tuple((*parse_lora_option(text), models[0]) for text in given)


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
    tensor_parallel: int = typer.Option(1, "--tensor-parallel", help="Ranks in all."),
    pipeline_parallel: int = typer.Option(
        1, "--pipeline-parallel", help="Stages in all (instead of --tensor-parallel)."
    ),
    nnodes: int = typer.Option(..., "--nnodes", help="Hosts the ranks run on."),
    node_rank: int = typer.Option(..., "--node-rank", help="This host's index (1..nnodes-1)."),
) -> None:
    """Run this host's share of a tensor- or pipeline-parallel model served from another
    host (meets rank 0 at MASTER_ADDR:MASTER_PORT, as torchrun's workers do)."""
    from hearth.config import load_settings
    from hearth.engine import pipeline_parallel as pp
    from hearth.engine import tensor_parallel as tp
    from hearth.engine.llm import resolve_model

    settings = load_settings()
    at = (settings.master_addr, settings.master_port)
    if (tensor_parallel > 1) == (pipeline_parallel > 1):
        raise UserInputError("tp-worker: give one of --tensor-parallel N or --pipeline-parallel N")
    path, _ = resolve_model(model, settings)
    if tensor_parallel > 1:
        tp.run_node(path, tp.TPConfig(tensor_parallel, nnodes, *at), node_rank, settings.threads)
    else:
        pp.run_node(path, pp.PPConfig(pipeline_parallel, nnodes, *at), node_rank, settings.threads)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("tp-worker")(tp_worker)
    app.add_typer(keys_app, name="keys")


__all__ = ["register"]
