"""Request preparation that both API surfaces share once a body is parsed: SamplingParams
from their parameters (checked against the model), token budgets, chat prompts through the
model's template. What runs the prepared request is handler.py. Never touches tensors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hearth.engine.engine_config import request_speculation
from hearth.engine.sampling_params import SamplingParams
from hearth.errors import ContextLengthError, InvalidParameterError, UserInputError
from hearth.serve.model_pool import LoadedModel

_SEED_MOD = 2**62  # the engine adds the choice index to the seed; keep it in range


def no_vision(model: LoadedModel) -> UserInputError:
    return InvalidParameterError(
        "images",
        f"model '{model.name}' has no vision input ({model.record.architecture} is text-only); "
        "remove the images or use a vision model",
    )


# the sampling fields /v1/chat/completions and /v1/completions share, by their OpenAI names
_OPENAI_SAMPLING = (
    "n",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "seed",
    "stop",
)


def openai_sampling(req: Any) -> dict[str, Any]:
    """The shared sampling fields of an OpenAI chat or completions request, for build_params."""
    values = {name: getattr(req, name) for name in _OPENAI_SAMPLING}
    values["speculate"] = req.speculative  # hearth's extension: false = no drafts for it
    return values


def build_params(model: LoadedModel, **values: Any) -> SamplingParams:
    """SamplingParams from request values, checked against the model: logit_bias token ids
    must be in its vocabulary. A value left None takes the model's generation defaults
    (hearth.engine.generation_defaults: the same ones `hearth run` and `LLM` use)."""
    given = {k: v for k, v in values.items() if v is not None}
    bias = given.pop("logit_bias", None)
    if bias is not None:
        vocab = model.llm.config.vocab_size
        parsed: dict[int, float] = {}
        for key, value in dict(bias).items():
            try:
                token = int(key)
            except (TypeError, ValueError):
                raise InvalidParameterError(
                    "logit_bias", f"logit_bias: keys must be token ids (integers), got {key!r}"
                ) from None
            if not 0 <= token < vocab:
                raise InvalidParameterError(
                    "logit_bias", f"logit_bias: token id {token} is outside 0..{vocab - 1}"
                )
            parsed[token] = float(value)
        given["logit_bias"] = parsed
    if "seed" in given:
        given["seed"] = int(given["seed"]) % _SEED_MOD
    stop = given.get("stop")
    if isinstance(stop, str):
        given["stop"] = (stop,)
    elif stop is not None:
        if len(stop) > 16:
            raise InvalidParameterError("stop", "stop: at most 16 stop strings")
        given["stop"] = tuple(stop)
    if isinstance(given.get("speculate"), str):
        given["speculate"] = request_speculation(
            given["speculate"], model.llm.engine.config.speculative
        )
    if model.lora is not None:  # the request named an adapter (model_pool.use)
        given["lora"] = model.lora
    return model.llm.default_sampling_params(**given)


# new tokens one request may ask for in all (its completions x max_tokens each): with the
# n <= 16 and context bounds, n=16 over a whole context was a minutes-long request
MAX_REQUEST_TOKENS = 65536


def request_max_tokens(num_completions: int, given: int | None, room: int, name: str) -> int:
    """max_tokens for each of a request's completions: `given` if the total fits in
    MAX_REQUEST_TOKENS (else 400 naming it); not given, what the context leaves (`room`),
    cut so that the total fits."""
    if given is None:
        return max(1, min(room, MAX_REQUEST_TOKENS // num_completions))
    if num_completions * given > MAX_REQUEST_TOKENS:
        raise InvalidParameterError(
            name,
            f"{name}: {num_completions} completions x {given} tokens is more than the "
            f"{MAX_REQUEST_TOKENS} new tokens one request may ask for; ask for at most "
            f"{MAX_REQUEST_TOKENS // num_completions} each, or fewer completions",
        )
    return given


def check_max_tokens(
    model: LoadedModel, num_prompt: int, max_tokens: int | None, name: str
) -> None:
    """OpenAI refuses a completion that cannot fit rather than truncating it silently."""
    room = model.max_model_len - num_prompt
    if room < 1:  # never truncate the prompt silently
        raise ContextLengthError(num_prompt, model.max_model_len)
    if max_tokens is not None and max_tokens > room:
        raise InvalidParameterError(
            name,
            f"{name}: {max_tokens} new tokens plus the {num_prompt}-token prompt exceed the "
            f"context of {model.max_model_len} tokens; ask for at most {max(room, 0)} or "
            "shorten the prompt",
        )


def chat_prompt(
    model: LoadedModel,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[dict[str, Any]] | None = None,
    template: str | None = None,
) -> list[int]:
    """Token ids of a conversation rendered by the model's chat template (or `template`, a
    Jinja chat template given with the request)."""
    tok = model.tokenizer
    if template is not None:
        from hearth.tokenizer import ChatTemplate

        try:
            text = ChatTemplate(template).render(
                [dict(m) for m in messages], add_generation_prompt=True, tools=tools
            )
        except Exception as exc:  # a user template: any failure is the user's to fix
            raise InvalidParameterError("template", f"template: cannot render it: {exc}") from exc
        return list(tok.encode(text, add_special_tokens=False))
    return list(tok.encode_chat(list(messages), add_generation_prompt=True, tools=tools))


def encode(model: LoadedModel, text: str) -> list[int]:
    return list(model.tokenizer.encode(text))
