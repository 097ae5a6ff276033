"""Drafters that run a model: self-speculation (the target's own first layers, its final
norm and LM head: LayerSkip-style early exit, no second file and no copy of a weight) and
a separate draft model that shares the target's tokenizer (`--draft MODEL`).

Both run in a small LLMEngine of their own (`DraftRunner`): greedy, k tokens, as one
request per proposal. Its KV cache is its own (for self-speculation only the draft
layers': num_layers / num_hidden_layers of the target's per token) and its prefix cache
keeps the full blocks of what a sequence already drafted from, so a proposal computes
only the tokens since the last one (about the accepted ones) before decoding its k
drafts. The target's paged KV of the first layers would hold the same keys and values for
accepted tokens, but sharing it would need the draft's positions written into blocks the
scheduler has not handed out yet (drafting comes before scheduling); a separate small
cache keeps the engine's block accounting untouched (decided for issue 28).

The drafts are greedy (the drafter's argmax): for the target's acceptance rule they are
deterministic proposals, as prompt lookup's are (rejection.py), so sampled requests keep
the target's distribution exactly. Knows nothing of files or the store: the draft model
comes loaded (hearth.engine.llm loads it and checks its vocabulary with
`check_same_vocabulary`)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import torch

from hearth.engine.engine_config import EngineConfig, plan_kv_cache
from hearth.engine.llm_engine import LLMEngine
from hearth.engine.sampling_params import SamplingParams
from hearth.errors import HearthError, UserInputError


class DraftRunner:
    """Proposes k greedy tokens after a sequence's tokens with its own engine. One runner
    serves every sequence (Speculator's new_drafter returns it for each), and drafts for
    all of a step's sequences in one batch (`propose_many`)."""

    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine
        self._ids = itertools.count()

    def propose(self, tokens: list[int], k: int) -> list[int]:
        return self.propose_many([(tokens, k)])[0]

    def propose_many(self, asks: list[tuple[list[int], int]]) -> list[list[int]]:
        """Drafts for several sequences ((tokens, k) each) in one batch of the draft
        engine: k draft steps in all, not k per sequence."""
        ids: dict[str, int] = {}
        for i, (tokens, k) in enumerate(asks):
            if k < 1 or len(tokens) + k > self.engine.max_model_len:
                continue  # past the draft's context: no drafts (the target decodes on)
            request_id = f"draft-{next(self._ids)}"
            params = SamplingParams(
                temperature=0, max_tokens=k, ignore_eos=True, speculate=False,
                skip_special_tokens=False,
            )  # fmt: skip
            try:
                self.engine.add_request(request_id, tokens, params)
            except HearthError:
                continue  # a draft that cannot run costs nothing but its drafts
            ids[request_id] = i
        drafts: list[list[int]] = [[] for _ in asks]
        try:
            while self.engine.has_unfinished_requests():
                for out in self.engine.step():
                    if out.finished and out.request_id in ids:
                        i = ids[out.request_id]
                        drafts[i] = list(out.outputs[0].token_ids)[: asks[i][1]]
        except HearthError:
            for request_id in ids:
                self.engine.abort(request_id)
            return [[] for _ in asks]
        return drafts


class EarlyExit:
    """The first `num_layers` layers of `decoder`, then its final norm and LM head: the
    draft of self-speculation, as the engine's runner sees a model. Shares the decoder's
    modules (no weight is copied)."""

    def __init__(self, decoder: Any, num_layers: int) -> None:
        self.decoder = decoder
        self.num_layers = num_layers
        self.ops = getattr(decoder, "ops", None)  # the runner tells the backend its threads

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, meta: Any, kv_caches: Any
    ) -> torch.Tensor:
        return self.decoder.forward_first_layers(
            input_ids, positions, meta, kv_caches, self.num_layers
        )

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder.compute_logits(hidden)


def _draft_config(target: EngineConfig, max_model_len: int) -> EngineConfig:
    """The draft engine's knobs: the target's blocks, context and batch, no speculation
    of its own, a pool of the default size (DEFAULT_KV_CONTEXTS full contexts at most;
    past it the draft engine preempts, as any engine does)."""
    return replace(
        target,
        speculative="off",
        draft_model=None,
        kv_cache_gb=None,
        max_model_len=max_model_len,
        max_loras=1,
    )


def self_drafter(
    decoder: Any,
    model_config: Any,
    tokenizer: Any,
    target: EngineConfig,
    max_model_len: int,
    dtype: torch.dtype,
    num_layers: int,
) -> DraftRunner:
    """Self-speculation's runner: the first `num_layers` layers of `decoder` over a KV cache
    of those layers only."""
    from hearth.model.kv_cache import allocate_kv_caches, kv_cache_bytes_per_block

    if not hasattr(decoder, "forward_first_layers"):
        raise UserInputError(
            "--speculative self needs the model's layers in this process; a model split over "
            "processes (tensor or pipeline parallel) has them on its ranks: use --speculative "
            "auto or ngram"
        )
    config = _draft_config(target, max_model_len)
    per_block = kv_cache_bytes_per_block(model_config, config.block_size, dtype, num_layers)
    plan = plan_kv_cache(config, per_block, max_model_len)
    caches = allocate_kv_caches(
        model_config, plan.num_blocks, config.block_size, dtype, num_layers=num_layers
    )
    return _runner(EarlyExit(decoder, num_layers), caches, tokenizer, config, plan, model_config)


def draft_model_drafter(
    decoder: Any,
    model_config: Any,
    tokenizer: Any,
    target: EngineConfig,
    max_model_len: int,
    dtype: torch.dtype,
) -> DraftRunner:
    """A separate draft model's runner, over a KV cache of its own."""
    from hearth.model.kv_cache import allocate_kv_caches, kv_cache_bytes_per_block

    length = min(max_model_len, model_config.max_position_embeddings)
    config = _draft_config(target, length)
    per_block = kv_cache_bytes_per_block(model_config, config.block_size, dtype)
    plan = plan_kv_cache(config, per_block, length)
    caches = allocate_kv_caches(model_config, plan.num_blocks, config.block_size, dtype)
    return _runner(decoder, caches, tokenizer, config, plan, model_config)


def _runner(
    model: Any, caches: Any, tokenizer: Any, config: EngineConfig, plan: Any, model_config: Any
) -> DraftRunner:
    engine = LLMEngine(
        model,
        caches,
        tokenizer,
        config,
        num_blocks=plan.num_blocks,
        max_model_len=plan.max_model_len,
        vocab_size=model_config.vocab_size,
    )
    return DraftRunner(engine)


def check_same_vocabulary(
    target_name: str, target_tokenizer: Any, draft_name: str, draft_tokenizer: Any
) -> None:
    """Refuse a draft model whose tokens are not the target's, id for id (a draft token
    must mean the same text to the target), naming both models."""
    sizes = target_tokenizer.vocab_size, draft_tokenizer.vocab_size
    why = None
    if sizes[0] != sizes[1]:
        why = f"its vocabulary has {sizes[1]} tokens, {target_name}'s has {sizes[0]}"
    else:
        target_vocab = target_tokenizer.encoded_vocab()
        draft_vocab = draft_tokenizer.encoded_vocab()
        diff = next(
            (i for i, (a, b) in enumerate(zip(target_vocab, draft_vocab, strict=True)) if a != b),
            None,
        )
        if diff is not None:
            why = (
                f"token {diff} is {draft_vocab[diff]!r} in it and {target_vocab[diff]!r} in "
                f"{target_name}"
            )
    if why is not None:
        raise UserInputError(
            f"the draft model {draft_name} cannot draft for {target_name}: {why}; a draft "
            "model must share the target's tokenizer (a smaller model of the same family)"
        )
