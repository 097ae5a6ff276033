"""`hearth bench [MODEL]`: hearth's engine against llama.cpp / transformers on the same file,
in one command (scenarios decode, concurrent, prefix; peak RSS), and with --accuracy what
each --quant mode costs. Parses, calls hearth.bench, prints a table or the JSON object."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hearth.cli.output import Output
from hearth.engine.engine_config import SPECULATIVE_HELP, check_speculative
from hearth.errors import UserInputError

if TYPE_CHECKING:
    from hearth.bench.runner import BenchConfig


def _table(out: Output, result: dict[str, Any]) -> None:
    from rich.table import Table

    m = result["machine"]
    out.console.print(
        f"[bold]{result['model']['name']}[/] ({result['model']['size_mb']} MB, quant "
        f"{result['model']['quant']}) on {m['cpu']}, {m['threads']} threads, memory "
        f"bandwidth {m['memory_bandwidth_gbps']} GB/s"
    )
    table = Table(
        "engine",
        "scenario",
        "conc.",
        "out tok/s",
        "TTFT p50 ms",
        "TTFT p99 ms",
        "ITL p50 ms",
        "failed",
        "peak RSS MB",
    )
    for r in result["runs"]:
        scenario = r["scenario"]
        if scenario == "prefix":
            scenario += " (cached)" if r["prefix_caching"] else " (no cache)"
        if r.get("speculative", "off") != "off":
            lookup = r.get("prompt_lookup")  # llama.cpp's drafter and its setting
            detail = (
                f" n={lookup['max_ngram_size']} k={lookup['num_pred_tokens']}" if lookup else ""
            )
            scenario += f" ({r['speculative']}{detail})"
        table.add_row(
            r["engine"],
            scenario,
            str(r["concurrency"]),
            str(r["output_tokens_per_s"]),
            str(r["ttft_ms_p50"]),
            str(r["ttft_ms_p99"]),
            str(r["itl_ms_p50"]),
            str(r["failed_requests"]),
            str(r["peak_rss_mb"]),
        )
    out.console.print(table)
    ratios = {k: v for k, v in result["ratios"].items() if v is not None}
    if ratios:
        out.console.print("ratios: " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
    if "accuracy" in result:
        acc = Table(
            "quant",
            "perplexity",
            "vs fp32",
            "logits max |Δ|",
            "logits mean |Δ|",
            "top-1 agree",
            "within budget",
        )
        for a in result["accuracy"]:
            acc.add_row(
                a["quant"],
                str(a["perplexity"]),
                f"{a['ppl_increase']:+.2%}",
                str(a["logits_max_abs_diff"]),
                str(a["logits_mean_abs_diff"]),
                f"{a['top1_agreement']:.1%}",
                "yes" if a["within_budget"] else "NO",
            )
        out.console.print(acc)


def _levels(text: str) -> tuple[int, ...] | None:
    """Levels from "1,4,16"; None for "" (every level). UserInputError names the option."""

    if not text.strip():
        return None
    try:
        levels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        levels = ()
    if not levels or any(c < 1 for c in levels):
        raise UserInputError(
            f"--concurrency takes positive request counts separated by commas (e.g. 1,4,16), "
            f"got {text!r}"
        )
    return levels


def _embed_bench(
    out: Output,
    model: str,
    scenario: list[str],
    peer: list[str],
    threads: int,
    accept_license: bool,
) -> None:
    from hearth.bench.embed_bench import EMBED_PEERS, run_embed_bench
    from hearth.config import load_settings
    from hearth.engine.llm import check_license, resolve_model

    if set(scenario) != {"embed"}:
        raise UserInputError("--scenario embed runs alone; give it without other scenarios")
    bad = [p for p in peer if p not in EMBED_PEERS]
    if bad:
        raise UserInputError(
            f"--scenario embed compares with {', '.join(EMBED_PEERS)}, not {bad[0]}"
        )
    settings = load_settings()
    path, record = resolve_model(model, settings)
    for warning in check_license(path, record, "run", settings, accept_license):
        Output.warning(warning)
    result = run_embed_bench(Path(path), threads, tuple(peer))
    if out.json:
        out.emit_json(result)
        return
    for r in result["runs"]:
        out.console.print(f"{r['engine']}: {r['sentences_per_s']} sentences/s {r['seconds']} s")
    if result["ratio"] is not None:
        for key in ("", "_float32"):
            if result["ratio" + key] is None:
                continue
            out.console.print(
                f"hearth{key.replace('_', '-')} / sentence-transformers: {result['ratio' + key]}x, "
                f"min cosine {result['min_cosine' + key]}"
            )


def _tune_bench(
    out: Output,
    model: str,
    scenario: list[str],
    peer: list[str],
    threads: int,
    steps: int,
    quick: bool,
    accept_license: bool,
) -> None:
    from dataclasses import replace

    from hearth.bench.tune_bench import TUNE_METHODS, TUNE_PEERS, TuneBenchConfig, run_tune_bench
    from hearth.config import load_settings
    from hearth.engine.llm import check_license, resolve_model
    from hearth.tokenizer import load_tokenizer

    if set(scenario) != {"tune"}:
        raise UserInputError("--scenario tune runs alone; give it without other scenarios")
    bad = [p for p in peer if p not in TUNE_PEERS]
    if bad:
        raise UserInputError(f"--scenario tune compares with {', '.join(TUNE_PEERS)}, not {bad[0]}")
    if steps < 1:
        raise UserInputError(f"--steps must be a positive integer, got {steps}")
    settings = load_settings()
    path, record = resolve_model(model, settings)
    for warning in check_license(path, record, "tune", settings, accept_license):
        Output.warning(warning)
    # hearth's qlora and full fine-tune measured beside its lora (only lora has a peer)
    config = TuneBenchConfig(threads=threads or 2, steps=steps, methods=TUNE_METHODS)
    if quick:  # seconds: the pipeline and the JSON, no meaningful rates
        config = replace(config, steps=2, micro_batches=2, seq_len=64, rounds=1)
    tokenizer = load_tokenizer(Path(path))
    result = run_tune_bench(
        Path(path), config, tuple(dict.fromkeys(peer)),
        lambda text: tokenizer.encode(text, add_special_tokens=False),
    )  # fmt: skip
    if out.json:
        out.emit_json(result)
        return
    for r in result["runs"]:
        out.console.print(
            f"{r['engine']} (round {r['round'] + 1}): {r['tokens_per_s']} tokens/s, "
            f"{r['tokens_per_cpu_s']} tokens per CPU second, peak RSS {r['peak_rss_mb']} MB, "
            f"last loss {r['losses'][-1]}"
        )
    summary = result["summary"]
    if "speedup_vs_peft" in summary:
        out.console.print(
            f"hearth / peft: {summary['speedup_vs_peft']}x tokens/s "
            f"({summary['cpu_speedup_vs_peft']}x per CPU second), peak RSS "
            f"{summary['peak_rss_vs_peft']}x, largest loss difference "
            f"{summary['max_loss_rel_diff']:.2%}"
        )


def _lora_bench(
    out: Output,
    model: str,
    scenario: list[str],
    peer: list[str],
    lora: list[str],
    concurrency: str,
    threads: int,
    quant: str,
    quick: bool,
    accept_license: bool,
) -> None:
    from hearth.bench.lora_bench import run_lora_bench
    from hearth.config import load_settings
    from hearth.engine.llm import check_license, resolve_model
    from hearth.errors import UserInputError
    from hearth.model.quant_modes import QUANT_MODES

    if set(scenario) != {"lora"}:
        raise UserInputError("--scenario lora runs alone; give it without other scenarios")
    if peer:
        raise UserInputError(
            "--scenario lora has no peer (llama.cpp cannot batch requests of different "
            "adapters); drop --peer"
        )
    if quant not in QUANT_MODES:
        raise UserInputError(f"--quant must be one of {', '.join(QUANT_MODES)}, got {quant!r}")
    adapters: dict[str, Path] = {}
    for item in lora:
        name, sep, where = item.partition("=")
        if not sep or not name or not where:
            raise UserInputError(f"--lora takes NAME=PATH (a PEFT folder or a .gguf), got {item!r}")
        if not Path(where).expanduser().exists():
            raise UserInputError(f"--lora {name}: {where} does not exist")
        adapters[name] = Path(where).expanduser()
    settings = load_settings()
    path, record = resolve_model(model, settings)
    for warning in check_license(path, record, "run", settings, accept_license):
        Output.warning(warning)
    result = run_lora_bench(
        Path(path), threads, _levels(concurrency) or (16,), adapters, quick, quant
    )
    if out.json:
        out.emit_json(result)
        return
    for r in result["runs"]:
        out.console.print(
            f"{'lora' if r['lora'] else 'base'} ({r['concurrency']} requests, "
            f"{r['adapters']} adapters): {r['output_tokens_per_s']} tokens/s, "
            f"{r['output_tokens_per_cpu_s']} per CPU second"
        )
    ratios = result["ratios"]
    out.console.print(
        f"lora / base: {ratios['lora_vs_base']}x tokens/s "
        f"({ratios['lora_vs_base_per_cpu_s']}x per CPU second)"
    )


def bench(
    ctx: typer.Context,
    model: str = typer.Argument(
        "",
        help="A store name, a .gguf file or an HF folder (default smollm2; all-minilm "
        "for --scenario embed).",
    ),
    quant: str = typer.Option("auto", "--quant", help="auto, none, int8 or int4."),
    scenario: list[str] = typer.Option(
        [],
        "--scenario",
        help="decode, concurrent, prefix (repeatable; default these three), spec "
        "(speculative decoding off vs --speculative), embed (an embedding model "
        "against --peer sentence-transformers), tune (a LoRA training step against "
        "--peer peft) or lora (the concurrent requests on the base vs spread over "
        "LoRA adapters).",
    ),
    concurrency: str = typer.Option(
        "",
        "--concurrency",
        help="Levels of the concurrent scenario, e.g. 16 or 1,4 (default 1,4,16,64).",
    ),
    peer: list[str] = typer.Option(
        [],
        "--peer",
        help="llama.cpp and/or transformers (peft for --scenario tune), run in the same command.",
    ),
    lora: list[str] = typer.Option(
        [],
        "--lora",
        help="NAME=PATH: an adapter (PEFT folder or .gguf) for --scenario lora (repeatable; "
        "default 4 synthetic rank-16 adapters on all seven projections).",
    ),
    peer_path: str = typer.Option(
        "",
        "--peer-path",
        help="A folder holding another llama-cpp-python build (pip install --target), e.g. "
        "one built for AVX2 only, that --peer llama.cpp imports (default: the setting "
        "bench_llama_cpp_path, else the installed one).",
    ),
    threads: int = typer.Option(0, "--threads", help="CPU threads for every engine; 0 = cores."),
    quick: bool = typer.Option(False, "--quick", help="Tiny scenario sizes (seconds)."),
    steps: int = typer.Option(
        30, "--steps", help="Optimizer steps of --scenario tune (each side, each round)."
    ),
    speculative: str = typer.Option(
        "auto", "--speculative", help="The mode --scenario spec compares with off. "
        + SPECULATIVE_HELP,
    ),
    draft: str | None = typer.Option(
        None, "--draft", help="The draft model of --speculative draft (a store name or a path)."
    ),
    accuracy: bool = typer.Option(
        False,
        "--accuracy",
        help="Also measure each quant mode's perplexity and logits vs fp32.",
    ),
    json_flag: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
    accept_license: bool = typer.Option(
        False, "--accept-license", help="Record your acceptance of the model's license terms."
    ),
) -> None:
    """Measure hearth against llama.cpp and transformers on the same model file."""
    out = Output.of(ctx, json_flag)
    if "embed" in scenario:
        _embed_bench(out, model or "all-minilm", scenario, peer, threads, accept_license)
        return
    if "tune" in scenario:
        _tune_bench(out, model or "smollm2", scenario, peer, threads, steps, quick, accept_license)
        return
    if "lora" in scenario:
        _lora_bench(
            out, model or "smollm2", scenario, peer, lora, concurrency, threads, quant, quick,
            accept_license,
        )  # fmt: skip
        return
    if lora:
        from hearth.errors import UserInputError

        raise UserInputError("--lora is for --scenario lora")
    config = _bench_config(
        model or "smollm2", quant, scenario, concurrency, peer, threads, quick, accuracy
    )
    mode = check_speculative(speculative)
    if draft is not None and mode == "auto":
        mode = "draft"  # --draft alone: the spec scenario compares the draft model with off
    if mode == "draft" and draft is None:
        raise UserInputError("--speculative draft needs --draft MODEL (a store name or a path)")
    config = replace(config, speculative=mode, draft=draft, llama_cpp_path=peer_path)
    result = _run_bench(config, accept_license)
    if out.json:
        out.emit_json(result)
    else:
        _table(out, result)


def _bench_config(
    model: str,
    quant: str,
    scenario: list[str],
    concurrency: str,
    peer: list[str],
    threads: int,
    quick: bool,
    accuracy: bool,
) -> BenchConfig:
    """The checked options (UserInputError names the bad one)."""
    from hearth.bench.runner import BenchConfig
    from hearth.bench.workloads import DEFAULT_SCENARIOS, SCENARIOS
    from hearth.model.quant_modes import QUANT_MODES

    if quant not in QUANT_MODES:
        raise UserInputError(f"--quant must be one of {', '.join(QUANT_MODES)}, got {quant!r}")
    bad = [s for s in scenario if s not in SCENARIOS]
    if bad:
        raise UserInputError(f"unknown scenario {bad[0]!r}; choose from {', '.join(SCENARIOS)}")
    return BenchConfig(
        model=model,
        quant=quant,
        scenarios=tuple(scenario) or DEFAULT_SCENARIOS,
        peers=tuple(dict.fromkeys(peer)),
        threads=threads,
        quick=quick,
        accuracy=accuracy,
        concurrency=_levels(concurrency),
    )


def _run_bench(config: BenchConfig, accept_license: bool) -> dict[str, Any]:
    from hearth.bench.runner import run_bench
    from hearth.config import load_settings
    from hearth.engine.llm import check_license, resolve_model

    settings = load_settings()
    path, record = resolve_model(config.model, settings)
    # benchmarking runs the model (and its peers on the same file): the gate of `run`
    for warning in check_license(path, record, "run", settings, accept_license):
        Output.warning(warning)
    size = (
        sum(f.stat().st_size for f in path.glob("*.safetensors"))
        if path.is_dir()
        else path.stat().st_size
    )
    return run_bench(config, Path(path), size / 1e6)


def register(app: typer.Typer) -> None:
    app.command()(bench)
