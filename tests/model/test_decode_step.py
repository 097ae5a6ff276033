"""The one-call C decode step (decode_step.py) against the layer-by-layer road it stands in
for, on the real SmolLM2 Q4_1 weights: the same logits to the bit, for one sequence and for
several of different lengths, in both quantized modes; models it cannot take keep the
modules' road."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch
from sequence_runner import SequenceRunner

from hearth.model import decode_step
from hearth.model.quant_load import load_decoder

pytestmark = pytest.mark.skipif(
    not decode_step.available(), reason="kernel unavailable (no compiler, no AVX-512 VNNI)"
)


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
    loaded: torch.nn.Module, lengths: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(len(lengths))
    prompts = [torch.randint(100, 20000, (n,)).tolist() for n in lengths]
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
    _run(decoder, [[1, 2, 3]], steps=1)
    assert decoder._step_planned_for is not None and decoder._step_plan is None


def test_switched_off_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(decode_step.ENV, "0")
    monkeypatch.setattr(decode_step.KERNEL, "lib", None)
    monkeypatch.setattr(decode_step.KERNEL, "tried", False)
    assert not decode_step.available()
    assert decode_step.plan(torch.nn.ModuleList(), torch.nn.Identity(), [], [], []) is None
