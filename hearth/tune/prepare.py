"""From a data path to what the trainer takes: rows read, parsed, tokenized with the model's
template, length-checked, split into train and eval (by the seed), packed into blocks (SFT)
or kept as (chosen, rejected) pairs (DPO). Knows nothing of models or optimizers."""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.errors import UserInputError
from hearth.tokenizer import Tokenizer
from hearth.tune.data_files import Row, read_rows
from hearth.tune.examples import parse_example, parse_preference
from hearth.tune.hub_data import fetch_hub_data, is_hub_data
from hearth.tune.packing import make_blocks
from hearth.tune.tokenize import check_lengths, tokenize_example, tokenize_preference
from hearth.tune.train_config import TrainConfig

__all__ = ["Prepared", "prepare_data", "read_source"]


@dataclass(frozen=True)
class Prepared:
    train: list[Any]  # Blocks, or (chosen, rejected) pairs for DPO
    eval: list[Any]
    num_examples: int
    num_tokens: int


def read_source(source: str | Path, endpoint: str = "") -> list[Row]:
    """The rows of a local path, or of hf://datasets/... (downloaded for this read only;
    `endpoint`: the Hub's address, Settings.hf_endpoint)."""
    if not is_hub_data(source):
        return read_rows(source)
    with tempfile.TemporaryDirectory(prefix="hearth-hub-data-") as tmp:
        paths = fetch_hub_data(str(source), Path(tmp), endpoint)
        return [row for path in paths for row in read_rows(path)]


def prepare_data(
    path: str | Path, tokenizer: Tokenizer, config: TrainConfig, endpoint: str = ""
) -> Prepared:
    rows = read_source(path, endpoint)
    if config.method == "dpo":
        pairs = [tokenize_preference(tokenizer, parse_preference(row)) for row in rows]
        flat = check_lengths([ex for pair in pairs for ex in pair], config.seq_len, config.truncate)
        if len(flat) != 2 * len(pairs):
            raise UserInputError("a preference pair has no answer token left after truncation")
        items: list[Any] = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        train, held = _split(items, config)
        tokens = sum(len(a) + len(b) for a, b in items)
        return Prepared(train, held, len(items), tokens)
    examples = check_lengths(
        [tokenize_example(tokenizer, parse_example(row)) for row in rows],
        config.seq_len,
        config.truncate,
    )
    train_ex, held_ex = _split(examples, config)
    return Prepared(
        make_blocks(train_ex, config.seq_len, config.pack),
        make_blocks(held_ex, config.seq_len, config.pack),
        len(examples),
        sum(len(e) for e in examples),
    )


def _split(items: list[Any], config: TrainConfig) -> tuple[list[Any], list[Any]]:
    """(train, eval): eval_split of the items, chosen by the seed, at least one when asked."""
    if config.eval_split <= 0:
        return items, []
    order = list(range(len(items)))
    random.Random(config.seed).shuffle(order)
    count = max(1, round(len(items) * config.eval_split))
    if count >= len(items):
        raise UserInputError(
            f"--eval-split {config.eval_split} leaves no training examples of {len(items)}"
        )
    held = set(order[:count])
    return [x for i, x in enumerate(items) if i not in held], [
        x for i, x in enumerate(items) if i in held
    ]
