"""A model's generation defaults: what a request that leaves a knob unset gets, the same for
`hearth run`, the REPL, `LLM`, /api/* and /v1/*. Later sources win, knob by knob:

1. OLLAMA_SAMPLING (Ollama's generic defaults) and a bounded output limit;
2. the model's own file: generation_config.json (HF) or `general.sampling.*` (GGUF), as vLLM
   does with `generation_config="auto"`;
3. the catalog's entry for the name (what an Ollama Modelfile's PARAMETER lines carry);
4. the PARAMETER lines of the Modelfile the model was made from (`hearth create`).

A model without a chat template is a base model: it continues text rather than answering, so
it gets completion-style defaults (a shorter limit, stop at a blank line) unless its own
sources say otherwise. Knows nothing of HTTP, the CLI or the store's layout."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from hearth.engine.sampling_params import SamplingParams
from hearth.errors import InvalidParameterError

# Ollama's sampling defaults (its api/types.go DefaultOptions), used where neither the model
# nor the request says otherwise; all but one: Ollama's repeat_penalty is 1.1, hearth's 1.0
# (off), so that greedy text stays what the model gives under the reference decoders
# (transformers) the tests hold it to; nothing measured here says 1.1 answers better. A
# repeat_penalty that is set looks at Ollama's window, the last 64 tokens (repeat_last_n).
OLLAMA_SAMPLING: Mapping[str, float] = {
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repetition_penalty": 1.0,
    "repeat_last_n": 64,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}
# no default runs unbounded: an answer stops here unless the request asks for more (a chat
# answer rarely needs more; Ollama's -1 is "until the context is full", which a base model
# reaches after minutes of rambling)
CHAT_MAX_TOKENS = 1024
# a base model continues text: a paragraph is what a completion without a limit should give
COMPLETION_MAX_TOKENS = 256
COMPLETION_STOP = ("\n\n",)

# generation_config.json / GGUF `general.sampling.*` / catalog keys -> our field names
_KEYS = {
    "temperature": "temperature",
    "temp": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "min_p": "min_p",
    "typical_p": "typical_p",
    "repetition_penalty": "repetition_penalty",
    "repeat_penalty": "repetition_penalty",
    "penalty_repeat": "repetition_penalty",
    "repeat_last_n": "repeat_last_n",
    "penalty_last_n": "repeat_last_n",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
    "max_new_tokens": "max_tokens",
    "num_predict": "max_tokens",
    "max_tokens": "max_tokens",
    "stop": "stop",
}


@dataclass(frozen=True)
class GenerationDefaults:
    """The knobs a request may leave unset, and where each value came from (`sources`:
    field -> "ollama" | "hearth" | "model" | "catalog" | "modelfile" | "completion")."""

    temperature: float
    top_k: int
    top_p: float
    min_p: float
    typical_p: float
    repetition_penalty: float
    repeat_last_n: int
    presence_penalty: float
    frequency_penalty: float
    max_tokens: int
    stop: tuple[str, ...]
    sources: Mapping[str, str]
    seed: int | None = None  # None: a fresh draw per request (Ollama's -1)

    @classmethod
    def resolve(
        cls,
        model_file: Mapping[str, Any] | None = None,
        catalog: Mapping[str, Any] | None = None,
        *,
        chat: bool = True,
        modelfile: Mapping[str, Any] | None = None,
    ) -> GenerationDefaults:
        """`model_file`: generation_config.json or the GGUF's sampling keys (other keys, such
        as eos_token_id, are ignored); `catalog`: the catalog's parameters for the name;
        `chat`: whether the model has a chat template (False = completion-style);
        `modelfile`: the PARAMETERs of a created model (Ollama's names)."""
        values: dict[str, Any] = dict(OLLAMA_SAMPLING) | {"seed": None}
        sources = dict.fromkeys(values, "ollama")
        values["max_tokens"], values["stop"] = CHAT_MAX_TOKENS, ()
        sources["max_tokens"] = sources["stop"] = "hearth"
        if not chat:
            values["max_tokens"], values["stop"] = COMPLETION_MAX_TOKENS, COMPLETION_STOP
            sources["max_tokens"] = sources["stop"] = "completion"
        for label, given in (("model", model_file), ("catalog", catalog), ("modelfile", modelfile)):
            for key, value in (given or {}).items():
                name = _KEYS.get(key)
                if name is None or value is None:
                    continue
                try:
                    coerced = _coerce(name, value)
                except (TypeError, ValueError):
                    raise InvalidParameterError(
                        name, f"{name}: the {label}'s default {key} = {value!r} is not a number"
                    ) from None
                if name == "max_tokens" and coerced <= 0:
                    continue  # "unbounded" (Ollama's -1) is what no default may be
                if name == "seed" and coerced < 0:
                    coerced = None  # Ollama's -1: a fresh seed for every request
                values[name] = coerced
                sources[name] = label
        # checked like a request's values: a broken generation_config.json fails at load
        SamplingParams(**{k: v for k, v in values.items() if k != "stop"})
        return cls(**values, sources=sources)

    def sampling_params(self, **overrides: Any) -> SamplingParams:
        """SamplingParams from these defaults; `overrides` that are not None win."""
        values = {k: v for k, v in asdict(self).items() if k != "sources"}
        values |= {k: v for k, v in overrides.items() if v is not None}
        return SamplingParams(**values)

    def with_values(self, **values: Any) -> GenerationDefaults:
        """A copy with some knobs set (a REPL's /set parameter), marked as the user's."""
        sources = dict(self.sources) | dict.fromkeys(values, "user")
        return replace(self, **values, sources=sources)

    def describe(self) -> list[tuple[str, str, str]]:
        """(name, value, source) rows in Ollama's vocabulary, for `/show parameters`."""
        names = {"repetition_penalty": "repeat_penalty", "max_tokens": "num_predict"}
        rows = []
        for field in OLLAMA_SAMPLING:
            rows.append((names.get(field, field), f"{getattr(self, field):g}", self.sources[field]))
        rows.append(("num_predict", str(self.max_tokens), self.sources["max_tokens"]))
        if self.seed is not None:
            rows.append(("seed", str(self.seed), self.sources["seed"]))
        rows.extend(("stop", repr(s), self.sources["stop"]) for s in self.stop)
        return rows


def _coerce(name: str, value: Any) -> Any:
    if name == "stop":
        return (value,) if isinstance(value, str) else tuple(str(s) for s in value)
    if name in ("top_k", "max_tokens", "repeat_last_n", "seed"):
        return int(value)
    return float(value)
