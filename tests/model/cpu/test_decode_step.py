"""The one-call C decode step (decode_step.py) against the layer-by-layer road it stands in
for: on the real SmolLM2 Q4_1 weights the same logits to the bit, for one sequence and for
several of different lengths, in both quantized modes. Which models take it is the
builder's word, from `decode_step.fits(config)`: a tiny model with a layer feature the C
step does not implement (Qwen3's q/k norms) is refused and still equals the layer road,
while forcing the step onto it would change its logits."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as tf
from sequence_runner import SequenceRunner
from tiny_models import COMMON, randomize

from hearth.model.backend import BackendConfig
from hearth.model.cpu import decode_step
from hearth.model.cpu.backend import CpuBackend
from hearth.model.quant_build import build_quantized_model
from hearth.model.quant_load import load_decoder
from hearth.weights.loader import load_weights

BACKEND = CpuBackend()
pytestmark = pytest.mark.skipif(not BACKEND.step, reason="kernel unavailable (no C compiler)")


def _run(decoder: torch.nn.Module, prompts: list[list[int]], steps: int) -> list[torch.Tensor]:
    """Prefill each prompt, then `steps` decode-only steps over all sequences at once (each
    feeding its own greedy token); every step's logits."""
    runner = SequenceRunner(decoder, len(prompts), max(map(len, prompts)) + steps)
    seen = []
    last = []
    for i, prompt in enumerate(prompts):
        logits = runner.step([(i, prompt)])[0]
        seen.append(logits[-1:])
        last.append(int(logits[-1].argmax()))
    for _ in range(steps):
        out = runner.step([(i, [tok]) for i, tok in enumerate(last)])
        seen.extend(out)
        last = [int(o[-1].argmax()) for o in out]
    return seen


@pytest.fixture(scope="module", params=["auto", "int8"])
def loaded(request: pytest.FixtureRequest, smollm2_gguf: Path):  # type: ignore[no-untyped-def]
    return load_decoder(smollm2_gguf, request.param).decoder


@pytest.mark.parametrize("lengths", [[23], [5, 40, 17]])
def test_bit_identical_to_the_layer_road(
    loaded: torch.nn.Module, lengths: list[int], monkeypatch: pytest.MonkeyPatch, isa_level: str
) -> None:
    # on each instruction-set level's build (conftest.py); the portable C road multiplies
    # 135M weights one lane at a time (minutes): the tiny model below checks it
    if isa_level == "generic":
        pytest.skip("portable C on real weights: the tiny-model test covers it")
    torch.manual_seed(len(lengths))
    prompts = [torch.randint(100, 20000, (n,)).tolist() for n in lengths]
    assert loaded.plans_decode_step
    fused = _run(loaded, prompts, steps=6)
    assert loaded._step_plan is not None  # the step did take the C road
    monkeypatch.setattr(decode_step, "plan", lambda *args: None)
    loaded._step_planned_for = None
    layered = _run(loaded, prompts, steps=6)
    assert loaded._step_plan is None
    assert len(fused) == len(layered)
    for got, want in zip(fused, layered, strict=True):
        assert torch.equal(got, want)
    loaded._step_planned_for = None  # the next test plans afresh


def test_a_plan_does_not_keep_the_caches_alive(loaded: torch.nn.Module) -> None:
    _run(loaded, [[5, 6, 7]], steps=2)  # its SequenceRunner and KV pool are gone after it
    gc.collect()
    refs = loaded._step_planned_for
    assert refs and all(ref() is None for ref in refs)


def test_float_model_keeps_the_modules(smollm2_gguf: Path) -> None:
    decoder = load_decoder(smollm2_gguf, "none").decoder  # fp32, dense: nothing to plan
    assert not decoder.plans_decode_step
    _run(decoder, [[1, 2, 3]], steps=1)
    assert decoder._step_plan is None


def test_switched_off_by_the_setting(smollm2_gguf: Path) -> None:
    off = BackendConfig(disabled=("decode-step",))
    assert not load_decoder(smollm2_gguf, "int8", backend=off).decoder.plans_decode_step


# --- tiny models: the builder's predicate decides ----------------------------------------


def _tiny(tmp_path: Path, config: Any, backend: CpuBackend) -> torch.nn.Module:
    """A random tiny HF model of `config`, built int8 (every projection on the low-bit
    kernel: widths in 16s and 32s) on `backend`."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(config)
    randomize(hf, unit_norms=True)
    folder = tmp_path / config.model_type
    hf.save_pretrained(folder)
    weights = load_weights(folder)
    return build_quantized_model(weights.config, weights.tensors, "int8", backend=backend)


PROMPTS = [[7, 99, 3, 41, 250, 8], [12, 201, 56]]


@pytest.mark.usefixtures("isa_level")
def test_a_plain_tiny_model_takes_the_step(tmp_path: Path) -> None:
    model = _tiny(tmp_path, tf.LlamaConfig(**COMMON), BACKEND)
    assert model.plans_decode_step
    fused = _run(model, PROMPTS, steps=4)
    assert model._step_plan is not None
    layered = _run(_tiny(tmp_path, tf.LlamaConfig(**COMMON), _NO_STEP), PROMPTS, steps=4)
    assert all(torch.equal(a, b) for a, b in zip(fused, layered, strict=True))


_NO_STEP = CpuBackend(disabled=("decode-step",))


def test_a_feature_the_step_lacks_makes_the_plan_refuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tf.Qwen3Config(**COMMON, head_dim=16)  # q/k RMSNorm per head: not in the C step
    model = _tiny(tmp_path, config, BACKEND)
    assert not decode_step.fits(model.config) and not model.plans_decode_step
    got = _run(model, PROMPTS, steps=4)
    assert model._step_plan is None  # the layers ran
    reference = _run(_tiny(tmp_path, config, _NO_STEP), PROMPTS, steps=4)
    assert all(torch.equal(a, b) for a, b in zip(got, reference, strict=True))
    # what the refusal prevents: the C step run anyway skips the q/k norms
    monkeypatch.setattr(decode_step, "fits", lambda config: True)
    forced = _tiny(tmp_path, config, BACKEND)
    assert forced.plans_decode_step
    wrong = _run(forced, PROMPTS, steps=4)
    assert forced._step_plan is not None
    decoded = slice(len(PROMPTS), None)  # the prefill logits come from the layers either way
    assert not all(
        torch.equal(a, b) for a, b in zip(wrong[decoded], reference[decoded], strict=True)
    )
