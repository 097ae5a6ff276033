"""`hearth run MODEL [PROMPT]`, as in `ollama run`: with a prompt, stream the answer and exit
(`-` reads stdin); without one, the chat REPL (hearth.cli.repl). Every knob left unset takes
the model's generation defaults (hearth.engine.generation_defaults). Parses, calls the
engine, prints; torch and the engine are imported only when the verb runs."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hearth.cli.output import Output
from hearth.cli.repl import ChatState, prompt_for, repl, stream_answer
from hearth.engine.engine_config import SPECULATIVE_HELP, check_speculative
from hearth.engine.generation_defaults import (
    CHAT_MAX_TOKENS,
    COMPLETION_MAX_TOKENS,
    OLLAMA_SAMPLING,
    GenerationDefaults,
)
from hearth.errors import UserInputError
from hearth.model.quant_modes import DEFAULT_QUANT, QUANT_HELP

if TYPE_CHECKING:
    from hearth.engine.llm import LLM
    from hearth.engine.structured import StructuredSpec


def _progress(label: str, done: int, total: int) -> None:
    if total:
        sys.stderr.write(f"\r{label}: {done * 100 // total}%")
        if done >= total:
            sys.stderr.write("\n")
    else:
        sys.stderr.write(f"{label}\n")
    sys.stderr.flush()


def _default_help(knob: str) -> str:
    return f"Default: the model's own (its file, then the catalog), else {OLLAMA_SAMPLING[knob]:g}."


# the options of this command, declared once so its signature stays short
_ModelArg = Annotated[
    str, typer.Argument(help="Model name in the store, or a .gguf / HF folder path.")
]
_PromptArg = Annotated[str | None, typer.Argument(help="Answer this and exit ('-' reads stdin).")]
_TemperatureOpt = Annotated[
    float | None, typer.Option("--temperature", help="0 is greedy. " + _default_help("temperature"))
]
_TopPOpt = Annotated[float | None, typer.Option("--top-p", help=_default_help("top_p"))]
_TopKOpt = Annotated[
    int | None, typer.Option("--top-k", help="0 disables it. " + _default_help("top_k"))
]
_RepeatPenaltyOpt = Annotated[
    float | None,
    typer.Option("--repeat-penalty", help="1 disables it. " + _default_help("repetition_penalty")),
]
_SeedOpt = Annotated[int | None, typer.Option("--seed")]
_MaxTokensOpt = Annotated[
    int | None,
    typer.Option(
        "--max-tokens",
        help=f"Most tokens per answer. Default: the model's own, else {CHAT_MAX_TOKENS} (a base model without a chat template: {COMPLETION_MAX_TOKENS}, stopping at a blank line). `/show parameters` in the chat shows what applies.",
    ),
]
_CtxOpt = Annotated[
    int | None, typer.Option("--ctx", help="Context length in tokens (default: the model's).")
]
_RawOpt = Annotated[bool, typer.Option("--raw", help="Plain completion: no chat template.")]
_VerboseOpt = Annotated[
    bool, typer.Option("--verbose", help="Print prompt tokens, TTFT and tokens/s.")
]
_KvCacheGbOpt = Annotated[float | None, typer.Option("--kv-cache-gb", help="KV-cache budget.")]
_QuantOpt = Annotated[str, typer.Option("--quant", help=f"Weights in memory: {QUANT_HELP}.")]
_AcceptLicenseOpt = Annotated[
    bool,
    typer.Option("--accept-license", help="Record your acceptance of the model's license terms."),
]
_LoraOpt = Annotated[
    str | None,
    typer.Option(
        "--lora",
        help="Run with this LoRA adapter (a PEFT folder: adapter_config.json + adapter_model.safetensors, or a GGUF LoRA file) on the model, unmerged.",
    ),
]
_MaxLoraRankOpt = Annotated[
    int, typer.Option("--max-lora-rank", help="The largest adapter rank taken.")
]
_TensorParallelOpt = Annotated[
    int,
    typer.Option(
        "--tensor-parallel",
        help="Split the weights over this many processes (torch.distributed; dense weights, the reference layers).",
    ),
]
_PipelineParallelOpt = Annotated[
    int,
    typer.Option(
        "--pipeline-parallel",
        help="Split the decoder layers over this many processes, in stages (torch.distributed; dense weights, the reference layers).",
    ),
]
_SpeculativeOpt = Annotated[str, typer.Option("--speculative", help=SPECULATIVE_HELP)]
_DraftOpt = Annotated[
    str | None,
    typer.Option(
        "--draft",
        help="The draft model of --speculative draft (a store name or a path; it must share "
        "the model's tokenizer). Given alone, it drafts under auto.",
    ),
]
_OutputFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="Constrain every answer: json, a JSON-schema file, regex:PATTERN, or grammar:FILE (Lark or GBNF).",
    ),
]


def run(
    model: _ModelArg,
    prompt: _PromptArg = None,
    temperature: _TemperatureOpt = None,
    top_p: _TopPOpt = None,
    top_k: _TopKOpt = None,
    repeat_penalty: _RepeatPenaltyOpt = None,
    seed: _SeedOpt = None,
    max_tokens: _MaxTokensOpt = None,
    ctx: _CtxOpt = None,
    raw: _RawOpt = False,
    verbose: _VerboseOpt = False,
    kv_cache_gb: _KvCacheGbOpt = None,
    quant: _QuantOpt = DEFAULT_QUANT,
    accept_license: _AcceptLicenseOpt = False,
    lora: _LoraOpt = None,
    max_lora_rank: _MaxLoraRankOpt = 16,
    tensor_parallel: _TensorParallelOpt = 1,
    pipeline_parallel: _PipelineParallelOpt = 1,
    speculative: _SpeculativeOpt = "auto",
    draft: _DraftOpt = None,
    output_format: _OutputFormatOpt = None,
) -> None:
    """Chat with a model, or answer one prompt (like `ollama run`)."""
    from hearth.config import load_settings
    from hearth.engine.llm import LLM

    given = _given_knobs(temperature, top_p, top_k, repeat_penalty, max_tokens)
    # bad values fail before the model loads, naming the option
    GenerationDefaults.resolve().with_values(**given).sampling_params(seed=seed)
    structured = _format_spec(output_format)
    if prompt == "-":
        prompt = sys.stdin.read()
    settings = load_settings()
    mode = check_speculative(speculative)
    llm = _load(
        LLM, model, ctx, kv_cache_gb, quant, accept_license, tensor_parallel,
        speculative=mode, max_lora_rank=max_lora_rank, pipeline_parallel=pipeline_parallel,
        draft_model=draft,
    )  # fmt: skip
    llm.require_generation()
    if lora is not None:
        llm.load_lora(_lora_name(lora), lora)
    for warning in llm.license_warnings:
        Output.warning(warning)
    defaults = llm.defaults.with_values(**given) if given else llm.defaults
    state = ChatState(
        defaults=defaults,
        raw=_plain_completion(llm, defaults, raw),
        seed=seed,
        structured=structured,
        conversations_dir=settings.home / "conversations",
        lora=_lora_name(lora) if lora is not None else llm.default_lora,
    )
    if prompt is not None:
        try:
            stream_answer(llm, prompt_for(llm, state, prompt), state.params(), verbose)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        return
    repl(llm, state, verbose, history=settings.home / "history")


def _given_knobs(
    temperature: float | None,
    top_p: float | None,
    top_k: int | None,
    repeat_penalty: float | None,
    max_tokens: int | None,
) -> dict[str, Any]:
    """The sampling options the user set, by GenerationDefaults' field names."""
    given = {
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "repetition_penalty": repeat_penalty,
        "max_tokens": max_tokens,
    }
    return {k: v for k, v in given.items() if v is not None}


def _plain_completion(llm: LLM, defaults: GenerationDefaults, raw: bool) -> bool:
    """`--raw`, or a model without a chat template (said once on stderr)."""
    if raw or llm.tokenizer.has_chat_template:
        return raw
    stops = ", stopping at a blank line" if "\n\n" in defaults.stop else ""
    sys.stderr.write(
        "note: this model has no chat template; running as plain completion "
        f"(up to {defaults.max_tokens} tokens{stops})\n"
    )
    return True


def _format_spec(value: str | None) -> StructuredSpec | None:
    """`--format`: json, regex:PATTERN, grammar:FILE or a JSON-schema file; checked before
    the model loads (GrammarError names what cannot be enforced)."""
    if value is None:
        return None
    from pathlib import Path

    from hearth.engine.structured import StructuredSpec

    if value == "json":
        return StructuredSpec.json_object()
    if value.startswith("regex:"):
        return StructuredSpec.regex(value.removeprefix("regex:"))
    path = Path(value.removeprefix("grammar:"))
    if not path.is_file():
        raise UserInputError(
            f"--format: no file {str(path)!r}; give json, a JSON-schema file, regex:PATTERN "
            "or grammar:FILE"
        )
    text = path.read_text()
    if value.startswith("grammar:"):
        return StructuredSpec.grammar(text)
    return StructuredSpec.json_schema(text)


def _load(
    cls: Any,
    model: str,
    ctx: int | None,
    kv_cache_gb: float | None,
    quant: str = DEFAULT_QUANT,
    accept_license: bool = False,
    tensor_parallel: int = 1,
    speculative: str = "off",
    max_lora_rank: int = 16,
    pipeline_parallel: int = 1,
    draft_model: str | None = None,
) -> LLM:
    from hearth.config import load_settings

    settings = load_settings()
    # one conversation at a time: the KV pool is sized for one context, unless told
    llm: LLM = cls(
        model,
        max_model_len=ctx,
        max_num_seqs=1,
        max_loras=1,
        max_lora_rank=max_lora_rank,
        kv_cache_gb=kv_cache_gb,
        quant=quant,
        accept_license=accept_license,
        settings=settings,
        progress=_progress,
        tensor_parallel=tensor_parallel,
        pipeline_parallel=pipeline_parallel,
        speculative=speculative,
        draft_model=draft_model,
    )
    return llm


def _lora_name(path: str) -> str:
    """What `--lora PATH` is called in the engine (and in its error messages)."""
    from pathlib import Path

    file = Path(path).expanduser().resolve()
    return (file.stem if file.suffix == ".gguf" else file.name) or "adapter"


def register(app: typer.Typer) -> None:
    app.command("run")(run)
