"""The chat REPL of `hearth run MODEL` (as `ollama run`'s): line editing and arrow-key history
(stdlib readline), \"\"\" multi-line input, /commands, answers streamed as they come, the
conversation kept within the context by dropping the oldest exchanges (never the system
message), and a visible "[stopped: length]" when the output limit cut an answer.
Ctrl-C stops an answer and returns to the prompt. Calls the engine, prints."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.errors import InvalidParameterError, UserInputError

if TYPE_CHECKING:
    from hearth.engine.generation_defaults import GenerationDefaults
    from hearth.engine.llm import LLM
    from hearth.engine.sampling_params import SamplingParams
    from hearth.engine.structured import StructuredSpec

HELP = """Available commands:
  /set parameter NAME VALUE   temperature, top_p, top_k, min_p, repeat_penalty, seed, num_predict
  /set system TEXT            set the system message
  /show parameters            the generation settings in use, and where each comes from
  /show info                  show model details
  /show license               the model's license and what it allows
  /save NAME                  save this conversation (system message, messages, parameters)
  /load NAME                  continue a saved conversation
  /clear                      forget the conversation
  /bye                        exit
  /?, /help                   this help
  \"\"\"                         begin / end a multi-line message"""

# /set parameter NAME (Ollama's names) -> (GenerationDefaults field, type); seed is separate
_PARAMS: dict[str, tuple[str, type]] = {
    "temperature": ("temperature", float),
    "top_p": ("top_p", float),
    "top_k": ("top_k", int),
    "min_p": ("min_p", float),
    "typical_p": ("typical_p", float),
    "repeat_penalty": ("repetition_penalty", float),
    "repeat_last_n": ("repeat_last_n", int),
    "presence_penalty": ("presence_penalty", float),
    "frequency_penalty": ("frequency_penalty", float),
    "num_predict": ("max_tokens", int),
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class ChatState:
    """One conversation: its generation settings (the model's defaults plus /set), the
    system message and the exchanges so far."""

    defaults: GenerationDefaults
    raw: bool
    seed: int | None = None
    structured: StructuredSpec | None = None
    system: str | None = None
    history: list[dict[str, str]] = field(default_factory=list)
    conversations_dir: Path | None = None  # where /save and /load keep conversations
    lora: str | None = None  # the LoRA adapter every answer uses (run --lora)

    def params(self) -> SamplingParams:
        return self.defaults.sampling_params(
            seed=self.seed, structured=self.structured, lora=self.lora
        )


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str | None


def stream_answer(
    llm: LLM, prompt: str | list[int], params: SamplingParams, verbose: bool
) -> Answer:
    """Stream one answer to stdout. Ctrl-C (KeyboardInterrupt) aborts the request, frees its
    blocks and propagates. An answer cut by the output limit or the context says so."""
    engine = llm.engine
    rid = f"run-{time.monotonic_ns()}"
    start = time.perf_counter()
    engine.add_request(rid, prompt, params)
    num_prompt = len(engine.requests[rid].prompt_token_ids)
    first: float | None = None
    text, num_tokens, reason = "", 0, None
    drafted = accepted = 0
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
                text, num_tokens, reason = c.text, len(c.token_ids), c.finish_reason
                drafted, accepted = c.draft_n, c.draft_n_accepted
    finally:
        engine.abort(rid)  # no-op when finished; frees the blocks on Ctrl-C or an error
    sys.stdout.write("\n")
    sys.stdout.flush()
    if reason == "length":
        # stderr: a piped answer stays the model's text, the terminal still shows the cut
        sys.stderr.write("[stopped: length]\n")
        sys.stderr.flush()
    if verbose:
        end = time.perf_counter()
        ttft = (first or end) - start
        rate = (num_tokens - 1) / (end - first) if first and num_tokens > 1 and end > first else 0.0
        sys.stderr.write(
            f"prompt tokens: {num_prompt}\ntime to first token: {ttft:.3f}s\n"
            f"output tokens: {num_tokens}\neval rate: {rate:.2f} tokens/s\n"
        )
        if drafted:
            sys.stderr.write(
                f"speculation: {accepted} of {drafted} drafted tokens accepted "
                f"({accepted / drafted:.0%})\n"
            )
    return Answer(text, reason)


def prompt_for(llm: LLM, state: ChatState, message: str) -> str | list[int]:
    """The prompt for `message`: plain text in raw mode; else the conversation rendered by
    the chat template, dropping the oldest exchanges (with a note) until an answer has room.
    A message too long for the context alone is left to the engine's clear error."""
    if state.raw:
        return message
    dropped = 0
    while True:
        messages = [{"role": "system", "content": state.system}] if state.system else []
        messages += [*state.history, {"role": "user", "content": message}]
        ids: list[int] = llm.tokenizer.encode_chat(messages)
        if len(ids) + answer_room(llm, state) <= llm.max_model_len or not state.history:
            break
        # one exchange is a user message and the answer to it
        del state.history[:2]
        dropped += 1
    if dropped:
        sys.stderr.write(
            f"note: the conversation outgrew the {llm.max_model_len}-token context; dropped "
            f"the oldest {dropped} exchange{'s' if dropped > 1 else ''}"
            f"{' (the system message is kept)' if state.system else ''}\n"
        )
    return ids


def answer_room(llm: LLM, state: ChatState) -> int:
    """Tokens kept free for the answer when fitting the conversation: the output limit, but
    at most a quarter of the context (a long history should not evict everything)."""
    return max(1, min(state.defaults.max_tokens, llm.max_model_len // 4))


def _set_parameter(state: ChatState, name: str, value: str) -> str:
    if name == "seed":
        try:
            state.seed = int(value)
        except ValueError:
            return f"'{value}' is not a valid int for seed"
        return f"Set parameter 'seed' to '{value}'"
    known = _PARAMS.get(name)
    if known is None:
        return f"unknown parameter '{name}'; known: {', '.join([*_PARAMS, 'seed'])}"
    key, kind = known
    try:
        parsed = kind(value)
    except ValueError:
        return f"'{value}' is not a valid {kind.__name__} for {name}"
    updated = state.defaults.with_values(**{key: parsed})
    try:
        updated.sampling_params()
    except InvalidParameterError as exc:
        return str(exc)
    state.defaults = updated
    return f"Set parameter '{name}' to '{value}'"


def _show(llm: LLM, state: ChatState, what: str) -> str:
    if what == "parameters":
        rows = state.defaults.describe()
        if state.seed is not None:  # /set parameter seed wins over the model's
            rows = [r for r in rows if r[0] != "seed"] + [("seed", str(state.seed), "user")]
        width = max(len(r[0]) for r in rows) + 2
        lines = [f"    {n:<{width}}{v:<10} ({s})" for n, v, s in rows]
        return "  Parameters (source: ollama, model, catalog, completion, hearth, user)\n" + (
            "\n".join(lines)
        )
    if what == "info":
        c = llm.config
        return (
            f"  Model\n    path              {llm.path}\n    architecture      {c.architecture}\n"
            f"    layers            {c.num_hidden_layers}\n    hidden size       {c.hidden_size}\n"
            f"    context length    {llm.max_model_len}\n    vocabulary        {c.vocab_size}\n"
            f"    quantization      {llm.quant}\n"
            f"    chat template     {'yes' if llm.tokenizer.has_chat_template else 'no'}"
        )
    if what == "license":
        return _license_text(llm.license_id)
    return f"Unknown /show target '{what}'; try /show parameters, info or license"


def _license_text(license_id: str | None) -> str:
    from hearth.licenses.facts import get_facts

    f = get_facts(license_id or "unknown")
    if f.id != license_id:
        return (f"  License\n    {license_id or 'unknown'}: hearth has no summary of it; "
                "read the model card and the license text")
    lines = [
        "  License",
        f"    id                {f.id}",
        f"    name              {f.name}",
        f"    summary           {f.summary}",
        f"    commercial use    {f.commercial_use}",
        f"    terms             {f.source_url}",
    ]
    if f.acceptable_use_policy:
        lines.append(f"    acceptable use    {f.acceptable_use_policy}")
    return "\n".join(lines)


def _save(state: ChatState, name: str) -> str:
    if state.conversations_dir is None:
        return "saving is not available here"
    if not _NAME.match(name):
        return f"'{name}' is not a valid name: use letters, digits, '.', '_' or '-'"
    state.conversations_dir.mkdir(parents=True, exist_ok=True)
    path = state.conversations_dir / f"{name}.json"
    data = {
        "system": state.system,
        "messages": state.history,
        "parameters": {k: v for k, v, s in state.defaults.describe() if s == "user"},
        "seed": state.seed,
    }
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)  # a crash mid-write never leaves a half-written conversation
    return f"Saved conversation as '{name}' ({path})"


def _load(state: ChatState, name: str) -> str:
    if state.conversations_dir is None or not _NAME.match(name):
        return f"no saved conversation '{name}'"
    path = state.conversations_dir / f"{name}.json"
    if not path.is_file():
        saved = sorted(p.stem for p in state.conversations_dir.glob("*.json"))
        return f"no saved conversation '{name}'; saved: {', '.join(saved) or 'none'}"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        history = [
            {"role": str(m["role"]), "content": str(m["content"])} for m in data["messages"]
        ]
    except (ValueError, KeyError, TypeError) as exc:
        return f"{path} is not a saved conversation ({exc}); nothing loaded"
    state.system, state.history = data.get("system"), history
    if data.get("seed") is not None:
        state.seed = int(data["seed"])
    for pname, value in (data.get("parameters") or {}).items():
        _set_parameter(state, str(pname), str(value))
    return f"Loaded conversation '{name}' ({len(history) // 2} exchanges)"


def command(llm: LLM, state: ChatState, line: str) -> bool:
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
    elif cmd == "/show" and len(parts) >= 2:
        print(_show(llm, state, parts[1]))
    elif cmd == "/save" and len(parts) == 2:
        print(_save(state, parts[1]))
    elif cmd == "/load" and len(parts) == 2:
        print(_load(state, parts[1]))
    elif cmd in ("/?", "/help"):
        print(HELP)
    elif cmd in ("/set", "/show", "/save", "/load"):
        print(f"Incomplete command '{line}'; type /? for help")
    else:
        print(f"Unknown command '{cmd}'. Type /? for help")
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


def _line_editing(history: Path | None) -> Callable[[], None]:
    """Arrow keys, line editing and history for input() (importing readline is enough), the
    history kept across sessions in `history` as Ollama keeps ~/.ollama/history. Returns
    what saves it at exit."""
    try:
        import readline
    except ImportError:  # Windows without pyreadline: plain input() still works
        return lambda: None
    if history is None:
        return lambda: None
    readline.set_history_length(1000)
    with contextlib.suppress(OSError):
        readline.read_history_file(history)

    def save() -> None:
        with contextlib.suppress(OSError):
            history.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(history)

    return save


def repl(llm: LLM, state: ChatState, verbose: bool, history: Path | None = None) -> None:
    save_history = _line_editing(history)
    try:
        _loop(llm, state, verbose)
    finally:
        save_history()


def _loop(llm: LLM, state: ChatState, verbose: bool) -> None:
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
            if not command(llm, state, message.strip()):
                return
            continue
        try:
            answer = stream_answer(llm, prompt_for(llm, state, message), state.params(), verbose)
        except KeyboardInterrupt:
            print()  # the answer is dropped, not added to the history
            continue
        except UserInputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            continue
        if not state.raw:
            state.history += [
                {"role": "user", "content": message},
                {"role": "assistant", "content": answer.text},
            ]
