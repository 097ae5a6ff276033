"""`hearth run MODEL [PROMPT]`, as in `ollama run`: with a prompt, stream the answer and exit
(`-` reads stdin); without one, a chat REPL with history, `\"\"\"` multi-line input and
/set, /clear, /show, /bye. Ctrl-C stops an answer and returns to the prompt. Parses, calls
the engine, prints; torch and the engine are imported only when the verb runs."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import typer

from hearth.cli.output import Output
from hearth.errors import HearthError, InvalidParameterError, UserInputError

if TYPE_CHECKING:
    from hearth.engine.llm import LLM
    from hearth.engine.sampling_params import SamplingParams
    from hearth.engine.structured import StructuredSpec

HELP = """Available commands:
  /set parameter NAME VALUE   temperature, top_p, top_k, seed, num_predict
  /set system TEXT            set the system message
  /clear                      forget the conversation
  /show info                  show model details
  /bye                        exit
  \"\"\"                         begin / end a multi-line message"""

_PARAMS = {"temperature": float, "top_p": float, "top_k": int, "seed": int, "num_predict": int}


@dataclass
class ChatState:
    params: SamplingParams
    raw: bool
    system: str | None = None
    history: list[dict[str, str]] = field(default_factory=list)


def _progress(label: str, done: int, total: int) -> None:
    if total:
        sys.stderr.write(f"\r{label}: {done * 100 // total}%")
        if done >= total:
            sys.stderr.write("\n")
    else:
        sys.stderr.write(f"{label}\n")
    sys.stderr.flush()


def _stream(llm: LLM, prompt: str | list[int], params: SamplingParams, verbose: bool) -> str:
    """Stream one answer to stdout; returns its text. Ctrl-C (KeyboardInterrupt) aborts the
    request, frees its blocks and propagates."""
    engine = llm.engine
    rid = f"run-{time.monotonic_ns()}"
    start = time.perf_counter()
    engine.add_request(rid, prompt, params)
    num_prompt = len(engine.requests[rid].prompt_token_ids)
    first: float | None = None
    text, num_tokens = "", 0
    try:
        while rid in engine.requests:
            for out in engine.step():
                if out.request_id != rid:
                    continue
                if out.error is not None:
                    raise out.error
                c = out.outputs[0]
                if c.delta_token_ids and first is None:
                    first = time.perf_counter()
                if c.delta_text:
                    sys.stdout.write(c.delta_text)
                    sys.stdout.flush()
                text, num_tokens = c.text, len(c.token_ids)
    finally:
        engine.abort(rid)  # no-op when finished; frees the blocks on Ctrl-C or an error
    sys.stdout.write("\n")
    sys.stdout.flush()
    if verbose:
        end = time.perf_counter()
        ttft = (first or end) - start
        rate = (num_tokens - 1) / (end - first) if first and num_tokens > 1 and end > first else 0.0
        sys.stderr.write(
            f"prompt tokens: {num_prompt}\ntime to first token: {ttft:.3f}s\n"
            f"output tokens: {num_tokens}\neval rate: {rate:.2f} tokens/s\n"
        )
    return text


def _prompt_for(llm: LLM, state: ChatState, message: str) -> str | list[int]:
    if state.raw:
        return message
    messages = list(state.history)
    if state.system:
        messages.insert(0, {"role": "system", "content": state.system})
    messages.append({"role": "user", "content": message})
    ids: list[int] = llm.tokenizer.encode_chat(messages)
    return ids


def _set_parameter(state: ChatState, name: str, value: str) -> str:
    kind = _PARAMS.get(name)
    if kind is None:
        return f"unknown parameter '{name}'; known: {', '.join(_PARAMS)}"
    try:
        parsed = kind(value)
    except ValueError:
        return f"'{value}' is not a valid {kind.__name__} for {name}"
    key = "max_tokens" if name == "num_predict" else name
    try:
        state.params = replace(state.params, **{key: parsed})
    except InvalidParameterError as exc:
        return str(exc)
    return f"Set parameter '{name}' to '{value}'"


def _command(llm: LLM, state: ChatState, line: str) -> bool:
    """Handle a /command; False means exit."""
    parts = line.split(maxsplit=3)
    cmd = parts[0]
    if cmd in ("/bye", "/exit"):
        return False
    if cmd == "/clear":
        state.history.clear()
        print("Cleared session context")
    elif cmd == "/set" and len(parts) >= 4 and parts[1] == "parameter":
        print(_set_parameter(state, parts[2], parts[3]))
    elif cmd == "/set" and len(parts) >= 3 and parts[1] == "system":
        state.system = line.split(maxsplit=2)[2].strip().strip('"')
        print("Set system message.")
    elif cmd == "/show" and len(parts) >= 2 and parts[1] == "info":
        c = llm.config
        print(
            f"  Model\n    path              {llm.path}\n    architecture      {c.architecture}\n"
            f"    layers            {c.num_hidden_layers}\n    hidden size       {c.hidden_size}\n"
            f"    context length    {llm.max_model_len}\n    vocabulary        {c.vocab_size}\n"
            f"    chat template     {'yes' if llm.tokenizer.has_chat_template else 'no'}"
        )
    else:
        print(HELP)
    return True


def _read_message(first: str) -> str:
    """A message: one line, or from a line starting with \"\"\" to one ending with it."""
    if not first.startswith('"""'):
        return first
    body = first[3:]
    if body.endswith('"""'):
        return body[:-3]
    lines = [body] if body else []
    while True:
        line = input("... ")
        if line.endswith('"""'):
            lines.append(line[:-3])
            return "\n".join(lines)
        lines.append(line)


def _repl(llm: LLM, state: ChatState, verbose: bool) -> None:
    interrupted = False  # a Ctrl-C at an empty prompt; a second one exits
    while True:
        try:
            line = input(">>> ")
            interrupted = False
            message = _read_message(line)
        except KeyboardInterrupt:
            if interrupted:
                print()
                return
            interrupted = True
            print("\nUse Ctrl + d or /bye to exit.")
            continue
        except EOFError:
            print()
            return
        if not message.strip():
            continue
        if message.startswith("/"):
            if not _command(llm, state, message.strip()):
                return
            continue
        try:
            answer = _stream(llm, _prompt_for(llm, state, message), state.params, verbose)
        except KeyboardInterrupt:
            print()  # the answer is dropped, not added to the history
            continue
        except UserInputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            continue
        if not state.raw:
            state.history += [
                {"role": "user", "content": message},
                {"role": "assistant", "content": answer},
            ]


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        model: str = typer.Argument(
            ..., help="Model name in the store, or a .gguf / HF folder path."
        ),
        prompt: str | None = typer.Argument(None, help="Answer this and exit ('-' reads stdin)."),
        temperature: float | None = typer.Option(
            None, "--temperature", help="0 is greedy (default: the catalog's, else 0.8)."
        ),
        top_p: float | None = typer.Option(None, "--top-p", help="Default: catalog's, else 0.9."),
        top_k: int | None = typer.Option(None, "--top-k", help="0 disables (default 40)."),
        seed: int | None = typer.Option(None, "--seed"),
        max_tokens: int | None = typer.Option(
            None, "--max-tokens", help="Default: until the end or the context is full."
        ),
        ctx: int | None = typer.Option(
            None, "--ctx", help="Context length in tokens (default: the model's)."
        ),
        raw: bool = typer.Option(False, "--raw", help="Plain completion: no chat template."),
        verbose: bool = typer.Option(
            False, "--verbose", help="Print prompt tokens, TTFT and tokens/s."
        ),
        kv_cache_gb: float | None = typer.Option(None, "--kv-cache-gb", help="KV-cache budget."),
        quant: str = typer.Option(
            "none",
            "--quant",
            help="Weights in memory: none (exact, fp32), auto (keep GGUF low-bit: fastest), "
            "int8, int4.",
        ),
        accept_license: bool = typer.Option(
            False, "--accept-license", help="Record your acceptance of the model's license terms."
        ),
        output_format: str | None = typer.Option(
            None,
            "--format",
            help="Constrain every answer: json, a JSON-schema file, regex:PATTERN, or "
            "grammar:FILE (Lark or GBNF).",
        ),
    ) -> None:
        """Chat with a model, or answer one prompt (like `ollama run`)."""
        from hearth.engine.llm import LLM
        from hearth.engine.sampling_params import SamplingParams

        sampling = _sampling_defaults(model) | {
            k: v
            for k, v in (("temperature", temperature), ("top_p", top_p), ("top_k", top_k))
            if v is not None
        }
        params = SamplingParams(
            temperature=float(sampling["temperature"]),
            top_p=float(sampling["top_p"]),
            top_k=int(sampling["top_k"]),
            seed=seed,
            max_tokens=max_tokens,
            structured=_format_spec(output_format),
        )
        if prompt == "-":
            prompt = sys.stdin.read()
        llm = _load(LLM, model, ctx, kv_cache_gb, quant, accept_license)
        llm.require_generation()
        for warning in llm.license_warnings:
            Output.warning(warning)
        if not raw and not llm.tokenizer.has_chat_template:
            sys.stderr.write("note: this model has no chat template; running as plain completion\n")
            raw = True
        state = ChatState(params=params, raw=raw)
        if prompt is not None:
            try:
                _stream(llm, _prompt_for(llm, state, prompt), params, verbose)
            except KeyboardInterrupt:
                raise typer.Exit(130) from None
            return
        _repl(llm, state, verbose)


def _sampling_defaults(model: str) -> dict[str, float]:
    """Ollama's generic defaults, overridden by what the catalog recommends for `model`."""
    from hearth.store.catalog import lookup

    defaults: dict[str, float] = {"temperature": 0.8, "top_p": 0.9, "top_k": 40}
    try:
        entry = lookup(model)
    except HearthError:  # a path, or a name the catalog rule rejects: no catalog defaults
        entry = None
    return defaults | dict(entry.parameters) if entry else defaults


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
    quant: str = "none",
    accept_license: bool = False,
) -> LLM:
    from hearth.config import load_settings

    settings = load_settings()
    # one conversation at a time: the KV pool is sized for one context, unless told
    llm: LLM = cls(
        model,
        max_model_len=ctx,
        max_num_seqs=1,
        kv_cache_gb=kv_cache_gb,
        quant=quant,
        accept_license=accept_license,
        settings=settings,
        progress=_progress,
    )
    return llm
