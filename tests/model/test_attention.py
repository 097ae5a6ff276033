"""The paged path: one prefill, chunked prefill and token-by-token decode through a cache
with 4-token blocks (scattered block tables) give the same logits; sequences batched
together give what each gives alone. Gemma 2 covers soft-capping and sliding windows,
Llama GQA, DeepSeek-V3 MLA (keys and values of different widths)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import transformers as tf
from conftest import COMMON

from hearth.model.simple import SequenceRunner

TOL = 1e-5
A = [7, 99, 3, 41, 250, 8, 8, 8, 61, 17, 140, 33, 2, 90]  # 14 tokens: spans 4 blocks
B = [12, 201, 56, 7, 7, 180, 4, 77, 9]


def _configs() -> dict[str, Any]:
    c = COMMON
    mla = {k: v for k, v in c.items() if k != "num_key_value_heads"}
    return {
        "llama": tf.LlamaConfig(**c),
        "gemma2": tf.Gemma2Config(
            **c,
            head_dim=16,
            sliding_window=5,
            attn_logit_softcapping=3.0,
            final_logit_softcapping=2.0,
        ),
        "deepseek_v3": tf.DeepseekV3Config(
            **mla,
            num_key_value_heads=4,
            kv_lora_rank=16,
            q_lora_rank=24,
            qk_nope_head_dim=8,
            qk_rope_head_dim=8,
            v_head_dim=12,
            n_routed_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            n_group=2,
            topk_group=1,
        ),
    }


@pytest.mark.parametrize("family", list(_configs()))
def test_prefill_chunks_and_decode_agree(family: str, tiny_pair: Any) -> None:
    _, model = tiny_pair(_configs()[family])
    whole = SequenceRunner(model, 1, 32, block_size=4).step([(0, A)])[0]

    chunked = SequenceRunner(model, 1, 32, block_size=4)
    pieces = [chunked.step([(0, A[s:e])])[0] for s, e in ((0, 3), (3, 9), (9, 14))]
    assert (torch.cat(pieces) - whole).abs().max() <= TOL

    # A and B decode token by token in one batch (the batched decode path), B starting later
    both = SequenceRunner(model, 2, 32, block_size=4)
    out_a, out_b = [], []
    for i, tok in enumerate(A):
        chunks = [(0, [tok])] + ([(1, [B[i - 5]])] if 5 <= i < 5 + len(B) else [])
        logits = both.step(chunks)
        out_a.append(logits[0])
        if len(logits) > 1:
            out_b.append(logits[1])
    assert (torch.cat(out_a) - whole).abs().max() <= TOL
    b_alone = SequenceRunner(model, 1, 32, block_size=4).step([(0, B)])[0]
    assert (torch.cat(out_b) - b_alone).abs().max() <= TOL


def test_mixed_prefill_and_decode_batch(tiny_pair: Any) -> None:
    _, model = tiny_pair(_configs()["gemma2"])
    ref_a = SequenceRunner(model, 1, 32, block_size=4).step([(0, A)])[0]
    ref_b = SequenceRunner(model, 1, 32, block_size=4).step([(0, B)])[0]
    runner = SequenceRunner(model, 2, 32, block_size=4)
    first = runner.step([(0, A[:10])])[0]
    # one step: A decodes its 11th token while B prefills its first 6 tokens
    a_tok, b_chunk = runner.step([(0, A[10:11]), (1, B[:6])])
    rest_b, rest_a = runner.step([(1, B[6:]), (0, A[11:])])
    assert (torch.cat([first, a_tok, rest_a]) - ref_a).abs().max() <= TOL
    assert (torch.cat([b_chunk, rest_b]) - ref_b).abs().max() <= TOL
