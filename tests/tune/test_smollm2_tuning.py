"""SmolLM2-135M (the real Q4_1 file): LoRA gradients equal PEFT's on transformers' model of the
same file; a short run teaches it to open every answer with a phrase it never used, and the
merged GGUF and the adapter give the same logits."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from hearth.config import load_settings
from hearth.model.build import build_model
from hearth.model.layers.lora import apply_lora, lora_layers
from hearth.store import Store
from hearth.tokenizer import Tokenizer
from hearth.tune import LoraConfig, TrainConfig, load_tuned, tune
from hearth.tune.forward import flatten, hidden_states, token_losses
from hearth.tune.tokenize import TokenizedExample
from hearth.weights.loader import load_weights

pytestmark = pytest.mark.slow


def test_smollm2_lora_gradients_equal_peft(smollm2_gguf: Path, hf_smollm2_model: Any) -> None:
    import copy

    import peft

    lora = LoraConfig(rank=4, alpha=8.0, targets=("q_proj", "v_proj", "down_proj"))
    theirs = peft.get_peft_model(
        copy.deepcopy(hf_smollm2_model),
        peft.LoraConfig(r=4, lora_alpha=8, target_modules=list(lora.targets)),
    )
    loaded = load_weights(smollm2_gguf)
    ours = build_model(loaded.config, loaded.tensors)
    apply_lora(ours, lora)
    params = dict(theirs.named_parameters())
    torch.manual_seed(1)
    for path, layer in lora_layers(ours):
        b = params[f"base_model.model.{path}.lora_B.default.weight"]
        with torch.no_grad():
            b.normal_(0.0, 0.02)
            layer.lora_A.weight.copy_(params[f"base_model.model.{path}.lora_A.default.weight"])
            layer.lora_B.weight.copy_(b)
    rng = random.Random(0)
    examples = [
        TokenizedExample(
            tuple(rng.randrange(49152) for _ in range(n)), (False,) * 4 + (True,) * (n - 4), str(n)
        )
        for n in (12, 9)
    ]
    ref = torch.zeros(())
    for ex in examples:
        logits = theirs(input_ids=torch.tensor([ex.ids])).logits[0, :-1].float()
        labels = torch.tensor(
            [t if on else -100 for t, on in zip(ex.ids[1:], ex.trained[1:], strict=True)]
        )
        ref = ref + torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
    ref.backward()
    mine = token_losses(ours, flatten(examples))
    mine.backward()
    torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-4)
    for path, layer in lora_layers(ours):
        for part in ("lora_A", "lora_B"):
            want = params[f"base_model.model.{path}.{part}.default.weight"].grad
            got = getattr(layer, part).weight.grad
            assert want is not None and got is not None
            assert float((got - want).norm() / want.norm()) <= 1e-4, f"{path}.{part}"


def _greedy(model: Any, tok: Tokenizer, question: str, max_new: int = 6) -> str:
    ids = tok.encode_chat([{"role": "user", "content": question}])
    out: list[int] = []
    with torch.no_grad():
        for _ in range(max_new):
            seq = ids + out
            hidden = hidden_states(
                model, flatten([TokenizedExample(tuple(seq), (False,) * len(seq), "q")])
            )
            out.append(int(model.compute_logits(hidden[-1:]).argmax()))
    return tok.decode(out)


@pytest.mark.timeout(3600)  # minutes on an idle 2-core machine; far more on a shared one
def test_smollm2_learns_a_phrase(
    smollm2_gguf: Path, smollm2_tokenizer: Tokenizer, hearth_home: Path, tmp_path: Path
) -> None:
    store = Store(load_settings())
    store.import_path(smollm2_gguf, "smollm2:135m", accept_license=True)
    topics = ["rivers", "bread", "stars", "trains", "cats", "rain", "chess", "tea", "maps", "bees",
              "snow", "clocks", "boats", "salt", "glass", "wind"]  # fmt: skip
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Tell me one fact about {t}."},
                {"role": "assistant", "content": f"Arr matey! {t.capitalize()} are interesting."},
            ]
        }
        for t in topics
    ]
    data = tmp_path / "pirate.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    question = "Tell me one fact about volcanoes."
    loaded = load_weights(smollm2_gguf)
    base = build_model(loaded.config, loaded.tensors)
    assert not _greedy(base, smollm2_tokenizer, question).startswith("Arr")
    del base
    outcome = tune(
        "smollm2:135m", data, "smollm2-pirate",
        TrainConfig(lora=LoraConfig(rank=8, alpha=16.0), lr=3e-3, max_steps=12, batch_size=4, seq_len=96, seed=0),
        dtype=torch.bfloat16,
    )  # fmt: skip
    assert (
        outcome.record is not None
        and outcome.result.history[-1]["loss"] < outcome.result.history[0]["loss"]
    )
    tuned, _, _ = load_tuned("smollm2-pirate")
    assert _greedy(tuned, smollm2_tokenizer, question).startswith("Arr matey")

    from hearth.tune.api import merge

    record = merge("smollm2-pirate")
    merged_weights = load_weights(store.locate(record.name).path)
    merged = build_model(merged_weights.config, merged_weights.tensors)
    ids = tuple(smollm2_tokenizer.encode("Arr matey! Volcanoes are"))
    flat = flatten([TokenizedExample(ids, (True,) * len(ids), "q")])
    with torch.no_grad():
        a = merged.compute_logits(hidden_states(merged, flat))
        b = tuned.compute_logits(hidden_states(tuned, flat))
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)
