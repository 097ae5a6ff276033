"""The loss mask proven against the rendered text: the trained tokens decode to exactly the
assistant turns (content + end-of-turn) of what the model's own template wrote."""

from __future__ import annotations

import pytest

from hearth.errors import UserInputError
from hearth.tokenizer import Tokenizer
from hearth.tune.data_files import Row
from hearth.tune.examples import parse_example, parse_preference
from hearth.tune.packing import make_blocks
from hearth.tune.tokenize import check_lengths, tokenize_example, tokenize_preference

CHAT = {
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
        {"role": "assistant", "content": "Rome."},
    ]
}


def _trained_runs(tok: Tokenizer, ids: tuple[int, ...], trained: tuple[bool, ...]) -> list[str]:
    runs: list[list[int]] = []
    for i, (t, on) in enumerate(zip(ids, trained, strict=True)):
        if on:
            if i == 0 or not trained[i - 1]:
                runs.append([])
            runs[-1].append(t)
    return [tok.decode(r, skip_special_tokens=False) for r in runs]


def test_mask_covers_exactly_the_assistant_turns(smollm2_tokenizer: Tokenizer) -> None:
    tok = smollm2_tokenizer
    ex = tokenize_example(tok, parse_example(Row(CHAT, "d.jsonl:1")))
    rendered = tok.apply_chat_template(CHAT["messages"], add_generation_prompt=False)
    # the ids are the rendered text, and the trained runs are its assistant parts
    assert tok.decode(list(ex.ids), skip_special_tokens=False) == rendered
    assert _trained_runs(tok, ex.ids, ex.trained) == ["Paris.<|im_end|>", "Rome.<|im_end|>"]
    assert "<|im_start|>assistant\nParis.<|im_end|>" in rendered


def test_tool_turns_are_not_trained(smollm2_tokenizer: Tokenizer) -> None:
    row = {
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "Calling."},
            {"role": "tool", "content": "sunny"},
            {"role": "assistant", "content": "It is sunny."},
        ]
    }
    ex = tokenize_example(smollm2_tokenizer, parse_example(Row(row, "t:1")))
    runs = _trained_runs(smollm2_tokenizer, ex.ids, ex.trained)
    assert runs == ["Calling.<|im_end|>", "It is sunny.<|im_end|>"]


def test_alpaca_prompt_completion_and_text(smollm2_tokenizer: Tokenizer) -> None:
    tok = smollm2_tokenizer
    alpaca = tokenize_example(
        tok, parse_example(Row({"instruction": "Add", "input": "2+2", "output": "4"}, "a:1"))
    )
    assert _trained_runs(tok, alpaca.ids, alpaca.trained) == ["4<|im_end|>"]
    assert "Add\n\n2+2" in tok.decode(list(alpaca.ids))
    pc = tokenize_example(
        tok, parse_example(Row({"prompt": "The sky is", "completion": " blue"}, "p:1"))
    )
    assert _trained_runs(tok, pc.ids, pc.trained) == [" blue<|im_end|>"]
    text = tokenize_example(tok, parse_example(Row({"text": "hello world"}, "t:1")))
    assert all(text.trained) and tok.decode(list(text.ids)) == "hello world"


def test_bad_rows_are_named() -> None:
    with pytest.raises(UserInputError, match=r"d\.jsonl:4: the conversation has no assistant turn"):
        parse_example(Row({"messages": [{"role": "user", "content": "hi"}]}, "d.jsonl:4"))
    with pytest.raises(UserInputError, match=r"d\.jsonl:5: no known format"):
        parse_example(Row({"question": "x"}, "d.jsonl:5"))
    with pytest.raises(UserInputError, match=r"role 'bot'"):
        parse_example(Row({"messages": [{"role": "bot", "content": "x"}]}, "d.jsonl:6"))
    with pytest.raises(UserInputError, match="DPO needs preference pairs"):
        parse_preference(Row({"prompt": "x"}, "d.jsonl:7"))


def test_too_long_rows_are_counted_or_truncated(smollm2_tokenizer: Tokenizer) -> None:
    examples = [
        tokenize_example(smollm2_tokenizer, parse_example(Row(CHAT, f"d:{i}"))) for i in range(3)
    ]
    limit = len(examples[0]) - 2
    with pytest.raises(
        UserInputError, match=r"3 of 3 examples are longer than --seq-len .*--truncate"
    ):
        check_lengths(examples, limit, truncate=False)
    cut = check_lengths(examples, limit, truncate=True)
    assert [len(e) for e in cut] == [limit] * 3


def test_preference_masks_only_the_answer(smollm2_tokenizer: Tokenizer) -> None:
    pair = parse_preference(Row({"prompt": "2+2?", "chosen": "4", "rejected": "5"}, "p:1"))
    chosen, rejected = tokenize_preference(smollm2_tokenizer, pair)
    assert _trained_runs(smollm2_tokenizer, chosen.ids, chosen.trained) == ["4<|im_end|>"]
    assert _trained_runs(smollm2_tokenizer, rejected.ids, rejected.trained) == ["5<|im_end|>"]


def test_packing_first_fit_keeps_examples_whole(smollm2_tokenizer: Tokenizer) -> None:
    rows = [{"text": "word " * n} for n in (5, 30, 8, 20)]
    examples = [
        tokenize_example(smollm2_tokenizer, parse_example(Row(r, f"t:{i}")))
        for i, r in enumerate(rows)
    ]
    blocks = make_blocks(examples, seq_len=40, pack=True)
    assert sorted(e.source for b in blocks for e in b.examples) == sorted(
        e.source for e in examples
    )
    assert all(b.num_tokens <= 40 for b in blocks)
    assert len(blocks) < len(examples)
    assert len(make_blocks(examples, 40, pack=False)) == len(examples)
