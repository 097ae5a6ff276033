"""The `spec` scenario's workloads (issue 28): single streams that speculative decoding may
speed up, each run twice by hearth, without speculation and with it (the same requests,
greedy, so the outputs are the same and only the time differs).

  spec-quote       an edit of a given ~300-token text (the Gettysburg address, with
                   "nation" changed to "country"): the output quotes its input
  spec-chat        open chat first turns (MT-Bench-like questions), one stream each
  spec-concurrent  the concurrent scenario's 16 requests (4 when quick), all at once: the
                   speculative run must not cost (auto turns itself off when it would)

Knows nothing of engines: prompts are rendered by the caller's chat template."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from hearth.bench.workloads import Workload, concurrent_prompts

QUOTE_FILE = Path(__file__).parent / "data" / "gettysburg.txt"
QUOTE_ASK = (
    "Copy the following speech exactly, word for word, changing only the word 'nation' "
    "to 'country' wherever it appears:\n\n"
)
CHAT_QUESTIONS = (
    "Compose an engaging travel blog post about a recent trip to Hawaii.",
    "Explain the difference between a list and a tuple in Python.",
    "What are the main causes of climate change? Answer briefly.",
    "Write a short poem about autumn leaves.",
)
ChatEncoder = Callable[[str], list[int]]  # one user message -> prompt ids


def spec_workloads(
    encode_chat: ChatEncoder, vocab_size: int, mode: str, quick: bool, seed: int = 0
) -> list[Workload]:
    """Each workload twice: speculative "off", then `mode`."""
    quote = encode_chat(QUOTE_ASK + QUOTE_FILE.read_text())
    n_quote, n_chat = (32, 16) if quick else (256, 128)
    questions = CHAT_QUESTIONS[:1] if quick else CHAT_QUESTIONS
    chats = [encode_chat(q) for q in questions]
    level = 4 if quick else 16
    prompts, outs = concurrent_prompts(
        random.Random(f"{seed}-concurrent-{level}"), level, vocab_size, quick
    )
    runs: list[Workload] = []
    for speculative in ("off", mode):
        runs.append(Workload("spec-quote", 1, [quote], [n_quote], speculative=speculative))
        runs.extend(Workload("spec-chat", 1, [c], [n_chat], speculative=speculative) for c in chats)
        runs.append(Workload("spec-concurrent", level, prompts, outs, speculative=speculative))
    return runs
