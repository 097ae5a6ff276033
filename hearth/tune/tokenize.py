"""Examples -> token ids with a loss mask. Conversations are rendered by the model's own chat
template; the assistant's tokens are found by rendering the conversation cut before and after
each assistant turn (the template's text for "the assistant speaks now" and for the finished
turn), so the mask follows whatever the template writes, end-of-turn token included. Raw
pieces (plain text, prompt/completion) are encoded in turn, with BOS first and EOS last.
Knows nothing of tensors or models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hearth.errors import UserInputError
from hearth.tokenizer import Tokenizer
from hearth.tune.examples import Example, Message, PreferenceExample

__all__ = [
    "TokenizedExample",
    "assistant_spans",
    "check_lengths",
    "tokenize_example",
    "tokenize_preference",
]


@dataclass(frozen=True)
class TokenizedExample:
    """ids: the example's tokens; trained[i]: whether the loss covers predicting ids[i]."""

    ids: tuple[int, ...]
    trained: tuple[bool, ...]
    source: str

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_trained(self) -> int:
        """Tokens the loss covers (the first token is never predicted)."""
        return sum(self.trained[1:])


def assistant_spans(
    tokenizer: Tokenizer, messages: Sequence[Message], tools: Sequence[dict] | None = None,
    only_last: bool = False,
) -> tuple[str, list[tuple[int, int]]]:  # fmt: skip
    """The rendered conversation and the character spans of its assistant turns (content
    and the template's end-of-turn marker, trailing whitespace excluded)."""
    full = tokenizer.apply_chat_template(messages, add_generation_prompt=False, tools=tools)
    spans: list[tuple[int, int]] = []
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    for i in turns[-1:] if only_last else turns:
        before = (
            tokenizer.apply_chat_template(messages[:i], add_generation_prompt=True, tools=tools)
            if i
            else ""
        )
        upto = tokenizer.apply_chat_template(
            messages[: i + 1], add_generation_prompt=False, tools=tools
        )
        if not (upto.startswith(before) and full.startswith(upto.rstrip())):
            raise UserInputError(
                "the model's chat template renders a conversation differently when it is cut "
                f"after turn {i} (it rewrites earlier turns), so the assistant's tokens cannot be "
                "found; train on prompt/completion pairs instead"
            )
        spans.append((len(before), len(upto.rstrip())))
    return full, spans


def tokenize_example(tokenizer: Tokenizer, example: Example) -> TokenizedExample:
    if example.messages is not None:
        text, spans = assistant_spans(tokenizer, example.messages, example.tools)
        return _masked(tokenizer, text, spans, example.source)
    assert example.pieces is not None
    ids: list[int] = []
    trained: list[bool] = []
    for index, (text, train) in enumerate(example.pieces):
        piece = tokenizer.encode(text, add_special_tokens=index == 0)
        ids.extend(piece)
        trained.extend([train] * len(piece))
    if tokenizer.eos_id is not None:  # so the model learns where a completion ends
        ids.append(tokenizer.eos_id)
        trained.append(True)
    return TokenizedExample(tuple(ids), tuple(trained), example.source)


def tokenize_preference(
    tokenizer: Tokenizer, pair: PreferenceExample
) -> tuple[TokenizedExample, TokenizedExample]:
    """(chosen, rejected): the prompt rendered with each answer; the mask covers the answer."""
    out = []
    for answer in (pair.chosen, pair.rejected):
        text, spans = assistant_spans(tokenizer, (*pair.prompt, answer), only_last=True)
        out.append(_masked(tokenizer, text, spans, pair.source))
    return out[0], out[1]


def _masked(
    tokenizer: Tokenizer, text: str, spans: list[tuple[int, int]], source: str
) -> TokenizedExample:
    # the template writes its own BOS, so none is added; a token is trained when it starts
    # inside an assistant span
    encoding = tokenizer.backend.encode(text, add_special_tokens=False)
    trained = tuple(any(a <= start < b for a, b in spans) for start, _ in encoding.offsets)
    return TokenizedExample(tuple(encoding.ids), trained, source)


def check_lengths(
    examples: list[TokenizedExample], seq_len: int, truncate: bool
) -> list[TokenizedExample]:
    """Examples longer than `seq_len` tokens are cut to it when `truncate`, else refused with
    how many there are. Examples left with nothing to learn are dropped."""
    long = [e for e in examples if len(e) > seq_len]
    if long and not truncate:
        worst = max(long, key=len)
        raise UserInputError(
            f"{len(long)} of {len(examples)} examples are longer than --seq-len {seq_len} tokens "
            f"(longest: {worst.source}, {len(worst)} tokens); raise --seq-len or pass --truncate "
            "to cut them"
        )
    out = [
        TokenizedExample(e.ids[:seq_len], e.trained[:seq_len], e.source) if len(e) > seq_len else e
        for e in examples
    ]
    kept = [e for e in out if e.num_trained > 0]
    if not kept:
        raise UserInputError("no example has a token to learn from (after truncation)")
    return kept
