"""SimReplica decides every step as the real engine does: a small burst over shared
prompts through LLMEngine (a tiny random llama) and through the simulator gives the same
steps (which request computes how many tokens), the same prefix hits and the same
prompt tokens computed. Not timings: the model is replaced by StepCosts in the sim."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from hearth.engine.engine_config import GIB, EngineConfig
from hearth.engine.llm_engine import LLMEngine
from hearth.engine.sampling_params import SamplingParams
from hearth.sim.costs import StepCosts
from hearth.sim.replica import SimReplica, step_shape
from hearth.sim.trace import SimRequest

Steps = list[list[tuple[str, int]]]
COSTS = StepCosts(0.01, 0.001, 0.002)


def _trace() -> list[SimRequest]:
    """10 chats over 2 system prompts of 40 tokens (2 whole blocks and a half), own parts
    of 5 to 23 tokens, 2 to 5 tokens out, all at once."""
    rng = random.Random(3)
    systems = [[rng.randrange(100, 40000) for _ in range(40)] for _ in range(2)]
    trace = []
    for i in range(10):
        own = [rng.randrange(100, 40000) for _ in range(5 + 2 * i)]
        prompt = tuple(systems[i % 2] + own)
        trace.append(SimRequest(i, 0.0, i % 2, 40, len(own), 2 + i % 4, prompt=prompt))
    return trace


def _tiny_engine(smollm2_gguf: Path, config: EngineConfig) -> LLMEngine:
    from transformers import LlamaConfig, LlamaForCausalLM

    from hearth.engine.llm import build_engine
    from hearth.model.build import build_model
    from hearth.tokenizer.loading import load_tokenizer
    from hearth.weights.families import config_from_hf

    hf_config = LlamaConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    hf_model = LlamaForCausalLM(hf_config).eval()
    model_config = config_from_hf(hf_config.to_dict())
    tensors = {k: v.detach().clone() for k, v in hf_model.state_dict().items()}
    model = build_model(model_config, tensors, torch.float32)
    tokenizer = load_tokenizer(smollm2_gguf)
    return build_engine(model_config, model, tokenizer, config, torch.float32)


def _engine_steps(engine: LLMEngine, trace: list[SimRequest]) -> Steps:
    steps: Steps = []
    schedule = engine.scheduler.schedule

    def recording() -> Any:
        out = schedule()
        if out:
            steps.append([(s.request_id, n) for s, n in zip(out.seqs, out.num_tokens, strict=True)])
        return out

    engine.scheduler.schedule = recording  # type: ignore[method-assign]
    for r in trace:
        params = SamplingParams(max_tokens=r.output_tokens, ignore_eos=True, temperature=0)
        engine.add_request(str(r.id), list(r.token_ids()), params)
    while engine.has_unfinished_requests():
        engine.step()
    return steps


def _sim_steps(replica: SimReplica, trace: list[SimRequest]) -> Steps:
    for r in trace:
        replica.admit(r)
    steps: Steps = []
    now = 0.0
    while replica.in_flight:
        took = replica.plan_step()
        assert replica.batch and took > 0
        b = replica.batch
        steps.append([(s.request_id, n) for s, n in zip(b.seqs, b.num_tokens, strict=True)])
        now += took
        replica.finish_step(now)
    return steps


def test_the_sim_schedules_a_burst_step_for_step_as_the_engine(smollm2_gguf: Path) -> None:
    # a 48-token budget chunks the prompts; 10 blocks force preemptions at the end
    # 2 layers x K and V x 2 heads x 16 dims x 16 tokens x 4 bytes, twice: 8,192 bytes a block
    config = EngineConfig(max_num_batched_tokens=48, max_num_seqs=6, kv_cache_gb=10 * 8192 / GIB)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        engine = _tiny_engine(smollm2_gguf, config)
        trace = _trace()
        real = _engine_steps(engine, trace)
        metrics = engine.metrics()
        assert engine.block_manager.num_blocks == 10 and metrics.num_preemptions > 0
        replica = SimReplica(COSTS, engine.block_manager.num_blocks * 16, config)
        engine.shutdown()
    finally:
        torch.set_num_threads(threads)
    sim = _sim_steps(replica, trace)
    assert sim == real
    assert replica.hit_tokens == metrics.prefix_cache_hit_tokens > 0
    assert replica.prompt_tokens == metrics.prompt_tokens_total
    assert any(len(step) > 1 and n > 1 for step in real for _, n in step)  # mixed steps


def test_step_shape_counts_prompt_rows_and_decode_rows() -> None:
    replica = SimReplica(COSTS)
    for r in _trace()[:2]:
        replica.admit(r)
    replica.plan_step()  # two different system prompts: both prefill at once
    assert replica.batch is not None
    shape = step_shape(replica.batch)
    assert shape.prefill_tokens == 45 + 47 and shape.decode_rows == 0
    assert shape.prefill_pairs == 45 * 46 // 2 + 47 * 48 // 2
    replica.finish_step(1.0)
    replica.plan_step()
    assert replica.batch is not None
    shape = step_shape(replica.batch)
    assert shape.prefill_tokens == 0 and shape.decode_rows == 2
    assert shape.decode_keys == 46 + 48
