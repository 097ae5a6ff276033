"""LoRA adapters per sequence on the tiny llama: PEFT makes and saves random adapters (B not
zero), hearth loads them beside the base. Rows of one batch with adapter A, adapter B and
none give PEFT's logits; greedy text in a mixed batch is each request's text alone; the
prefix cache never crosses adapters; more adapters than slots take turns; bad adapters are
refused with what is wrong."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from known_drafter import KnownContinuation
from peft_adapters import assert_one_batch_matches, peft_adapter
from safetensors.torch import load_file, save_file

from hearth.engine.llm_engine import LLMEngine
from hearth.engine.sampling_params import SamplingParams
from hearth.errors import NotFoundError, UnsupportedModelError, UserInputError
from hearth.model.build import fuse_projections

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def adapters(tiny_llama: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """{"a": (folder, peft model) rank 8 on all seven projections, "b": rank 4 on q, v, down
    with rsLoRA}."""
    _, hf_model = tiny_llama
    root = tmp_path_factory.mktemp("adapters")
    return {
        "a": (root / "a", peft_adapter(hf_model, root / "a", 1, 8, ALL)),
        "b": (
            root / "b",
            peft_adapter(
                hf_model, root / "b", 2, 4, ["q_proj", "v_proj", "down_proj"], use_rslora=True
            ),
        ),
    }


def _engine(
    make_engine: Callable[..., LLMEngine], adapters: Any, fused: bool = False, **kw: Any
) -> LLMEngine:
    kw.setdefault("max_lora_rank", 8)
    engine = make_engine(**kw)
    if fused:  # the serving road's fused q/k/v and gate/up: a part's update goes to its rows
        fuse_projections(engine.runner.model)  # type: ignore[arg-type]
    for name, (folder, _) in adapters.items():
        engine.add_lora(name, folder)
    return engine


PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16], [5, 6, 7, 8, 9, 10, 11], [20, 21, 22]]
LORAS = ["a", "b", None, "a"]


@pytest.mark.parametrize("fused", [False, True], ids=["separate", "fused"])
def test_rows_of_one_batch_give_pefts_logits(
    make_engine: Callable[..., LLMEngine], tiny_llama: Any, adapters: Any, fused: bool
) -> None:
    engine = _engine(make_engine, adapters, fused)
    _, base = tiny_llama
    reference_of = {name: made[1] for name, made in adapters.items()}
    assert_one_batch_matches(engine, base, PROMPTS, LORAS, reference_of)


def _greedy(engine: LLMEngine, prompts: list[list[int]], loras: list[str | None]) -> list[Any]:
    ids = [f"r{i}" for i in range(len(prompts))]
    for rid, prompt, lora in zip(ids, prompts, loras, strict=True):
        params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True, lora=lora)
        engine.add_request(rid, prompt, params)
    done: dict[str, list[int]] = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            assert out.error is None
            if out.finished:
                done[out.request_id] = out.outputs[0].token_ids
    return [done[rid] for rid in ids]


def test_mixed_batch_gives_each_request_its_text_alone(
    make_engine: Callable[..., LLMEngine], adapters: Any
) -> None:
    engine = _engine(make_engine, adapters)
    together = _greedy(engine, PROMPTS, LORAS)
    alone = [_greedy(engine, [p], [lora])[0] for p, lora in zip(PROMPTS, LORAS, strict=True)]
    assert together == alone
    # the adapters matter: the same prompt under "a" and under the base differs
    assert together[0] != together[2]


def test_prefix_cache_is_shared_within_an_adapter_never_across(
    make_engine: Callable[..., LLMEngine], adapters: Any
) -> None:
    engine = _engine(make_engine, adapters, block_size=4)
    prompt = list(range(30, 47))  # 17 tokens: 4 full blocks
    bm = engine.block_manager

    def hits(lora: str | None) -> int:
        before = bm.num_prefix_hit_tokens
        _greedy(engine, [prompt], [lora])
        return bm.num_prefix_hit_tokens - before

    assert hits("a") == 0
    assert hits("b") == 0  # same tokens, another adapter: other K/V
    assert hits(None) == 0
    assert hits("a") == 16
    assert hits(None) == 16


def test_more_adapters_than_slots_take_turns(
    make_engine: Callable[..., LLMEngine], adapters: Any
) -> None:
    engine = _engine(make_engine, adapters, max_loras=1)
    want = [_greedy(engine, [p], [lora])[0] for p, lora in zip(PROMPTS, LORAS, strict=True)]
    assert _greedy(engine, PROMPTS, LORAS) == want
    assert engine.adapters is not None and len(engine.adapters.resident) == 1
    assert engine.metrics().lora_requests_total == {"a": 4, "b": 2}


def test_unknown_adapter_is_refused_naming_those_loaded(
    make_engine: Callable[..., LLMEngine], adapters: Any
) -> None:
    engine = make_engine()
    with pytest.raises(NotFoundError, match="none is loaded"):
        engine.add_request("x", [1, 2], SamplingParams(lora="nope"))
    engine = _engine(make_engine, adapters)
    with pytest.raises(NotFoundError, match=r"'nope'.*loaded: a, b"):
        engine.add_request("x", [1, 2], SamplingParams(lora="nope"))
    assert not engine.requests


def test_unloading_an_adapter_in_use_lets_its_requests_finish(
    make_engine: Callable[..., LLMEngine], adapters: Any
) -> None:
    engine = _engine(make_engine, adapters)
    engine.add_request("r", [5, 6, 7], SamplingParams(temperature=0, max_tokens=6, lora="a"))
    engine.step()
    engine.remove_lora("a")
    with pytest.raises(NotFoundError):  # no new request for it from now on
        engine.add_request("s", [5, 6, 7], SamplingParams(lora="a"))
    outputs = []
    while engine.has_unfinished_requests():
        outputs.extend(engine.step())
    assert outputs[-1].finished and outputs[-1].error is None
    assert [a.name for a in engine.list_loras()] == ["b"]
    assert engine.adapters is not None and "a" not in engine.adapters.adapters
    engine.add_lora("a", adapters["a"][0])  # and it loads again
    assert [a.name for a in engine.list_loras()] == ["a", "b"]


def test_rank_above_max_lora_rank_is_refused(
    make_engine: Callable[..., LLMEngine], adapters: Any
) -> None:
    engine = make_engine(max_lora_rank=4)
    with pytest.raises(UserInputError, match=r"rank is 8 but max_lora_rank is 4.*--max-lora-rank"):
        engine.add_lora("a", adapters["a"][0])
    engine.add_lora("b", adapters["b"][0])  # rank 4 fits


def test_adapter_of_another_base_is_refused(
    make_engine: Callable[..., LLMEngine], tmp_path: Path
) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    other = LlamaForCausalLM(
        LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2)
    )  # fmt: skip
    peft_adapter(other, tmp_path / "other", 3, 4, ["q_proj"])
    engine = make_engine()
    with pytest.raises(UserInputError, match="made for another base model"):
        engine.add_lora("other", tmp_path / "other")
    # hearth's own adapters name their base's digest: a mismatch names both
    weights = tmp_path / "other" / "adapter_model.safetensors"
    save_file(load_file(str(weights)), str(weights), metadata={
        "format": "pt", "hearth.base": "gemma3:270m", "hearth.base_digest": "sha256:" + "1" * 64,
    })  # fmt: skip
    engine.base_name, engine.base_digest = "smollm2:135m", "sha256:" + "2" * 64
    with pytest.raises(UserInputError, match=r"made for gemma3:270m .*not for smollm2:135m"):
        engine.add_lora("other", tmp_path / "other")


def test_adapters_the_serving_road_cannot_compute_are_refused(
    make_engine: Callable[..., LLMEngine], adapters: Any, tmp_path: Path
) -> None:
    import shutil

    engine = make_engine()
    folder = tmp_path / "dora"
    shutil.copytree(adapters["a"][0], folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(UnsupportedModelError, match="DoRA"):
        engine.add_lora("dora", folder)
    with pytest.raises(UserInputError, match="not a PEFT adapter folder"):
        engine.add_lora("empty", tmp_path)
    # a module the base lacks (a third layer on a two-layer model)
    weights = load_file(str(adapters["b"][0] / "adapter_model.safetensors"))
    weights = {k.replace("layers.1.", "layers.2."): v for k, v in weights.items()}
    (tmp_path / "extra").mkdir()
    shutil.copy(adapters["b"][0] / "adapter_config.json", tmp_path / "extra")
    save_file(weights, str(tmp_path / "extra" / "adapter_model.safetensors"))
    with pytest.raises(UserInputError, match=r"model.layers.2.* does not have"):
        engine.add_lora("extra", tmp_path / "extra")


def test_more_slots_than_sequences_is_refused() -> None:
    from hearth.engine.engine_config import EngineConfig

    with pytest.raises(ValueError, match="max_loras 8 is more than max_num_seqs 4"):
        EngineConfig(max_loras=8, max_num_seqs=4)


def test_quantized_decode_steps_take_the_adapter(smollm2_gguf: Path, tmp_path: Path) -> None:
    """SmolLM2 Q4_1 as served by default (int4, bf16): decode steps are one C call, which
    adds the adapter's update after each projection with the layers' own kernel: its
    logprobs are the same to the bit whether or not the C step is planned, and not the
    base's."""
    from peft_adapters import smollm2_adapter

    from hearth.engine.llm import LLM

    llm = LLM(smollm2_gguf, kv_cache_gb=0.05, max_model_len=256, num_threads=1, license_use=None)
    model: Any = llm.engine.runner.model
    assert model.plans_decode_step  # the C step serves the base's decodes
    llm.load_lora("a", smollm2_adapter(tmp_path / "a", 0))
    prompt = list(llm.tokenizer.encode("The capital of France is"))

    def greedy(lora: str | None) -> list[tuple[int, dict[int, float]]]:
        params = SamplingParams(temperature=0, max_tokens=4, logprobs=3, ignore_eos=True)
        out = llm.generate([prompt], params, lora=lora)[0].outputs[0]
        return [
            (t, {k: v.logprob for k, v in lp.items()})
            for t, lp in zip(out.token_ids, out.logprobs, strict=True)
        ]

    planned = greedy("a")
    model.plans_decode_step = False
    try:
        layers = greedy("a")
    finally:
        model.plans_decode_step = True
    assert planned == layers
    assert greedy(None) != planned


def test_quantized_mixed_batch_is_one_c_step_per_token(smollm2_gguf: Path, tmp_path: Path) -> None:
    """Rows of adapters of different ranks and targets, and base rows, decoded together on
    the C step: each row's logprobs are those of the layer road to the bit."""
    from peft_adapters import smollm2_adapter

    from hearth.engine.llm import LLM

    llm = LLM(smollm2_gguf, kv_cache_gb=0.05, max_model_len=256, num_threads=2, license_use=None)
    model: Any = llm.engine.runner.model
    llm.load_lora("a", smollm2_adapter(tmp_path / "a", 0))
    llm.load_lora(
        "b", smollm2_adapter(tmp_path / "b", 1, r=4, target_modules=["v_proj", "up_proj"])
    )
    prompts = [list(llm.tokenizer.encode(t)) for t in ("The capital of France is", "Once upon")]
    rows = [(p, lora) for p in prompts for lora in ("a", "b", None)]

    def greedy() -> list[Any]:
        params = SamplingParams(temperature=0, max_tokens=3, logprobs=2, ignore_eos=True)
        outs = llm.generate([p for p, _ in rows], params, lora=[lora for _, lora in rows])
        return [
            (
                o.outputs[0].token_ids,
                [{k: v.logprob for k, v in lp.items()} for lp in o.outputs[0].logprobs or []],
            )
            for o in outs
        ]

    planned = greedy()
    assert model._step_plan is not None and model._step_plan.lora_key is not None
    model.plans_decode_step = False
    try:
        layers = greedy()
    finally:
        model.plans_decode_step = True
    assert planned == layers
    assert len({str(o) for o in planned[:3]}) == 3  # a, b and the base answer differently


def test_speculation_under_adapters_gives_the_same_text(
    make_engine: Callable[..., LLMEngine], adapters: Any
) -> None:
    from hearth.engine.spec.speculator import Speculator

    plain = _greedy(_engine(make_engine, adapters), PROMPTS, LORAS)
    engine = _engine(make_engine, adapters, speculative="ngram")
    expected = {(tuple(p), lora): p + o for p, lora, o in zip(PROMPTS, LORAS, plain, strict=True)}
    drafters: list[KnownContinuation] = []

    def drafter(seq: Any) -> KnownContinuation:
        drafters.append(KnownContinuation(expected[(tuple(seq.prompt_token_ids), seq.lora)]))
        return drafters[-1]

    engine.speculator = Speculator("ngram", 4, drafter)
    assert _greedy(engine, PROMPTS, LORAS) == plain
    assert sum(d.calls for d in drafters) > 0  # verification steps did run with adapters
