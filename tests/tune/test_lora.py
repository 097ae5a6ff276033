"""hearth's LoRA against PEFT's on the same transformers model, batch and initialisation:
the loss and every LoRA gradient agree (fp32), for the dense families; packing gives the
sum of the examples' separate losses."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from hearth.errors import InvalidParameterError, UserInputError
from hearth.model.layers.lora import LoraConfig, apply_lora, lora_layers
from hearth.tune.forward import flatten, token_losses
from hearth.tune.tokenize import TokenizedExample

EXAMPLES = [
    TokenizedExample(tuple(range(3, 20)), (False,) * 6 + (True,) * 11, "a"),
    TokenizedExample((5, 9, 2, 77, 31, 8, 64, 12, 99), (False, False) + (True,) * 7, "b"),
    TokenizedExample(tuple(range(40, 71)), (True,) * 31, "c"),
]


def peft_pair(
    tiny_pair: Any, model_type: str, lora: LoraConfig, **overrides: Any
) -> tuple[Any, Any]:
    """(PEFT model over the transformers model, hearth model with LoRA), same A and B (B
    random, so the gradient of A is not zero)."""
    import peft

    hf, ours = tiny_pair(model_type, **overrides)
    peft_model = peft.get_peft_model(
        hf,
        peft.LoraConfig(
            r=lora.rank,
            lora_alpha=lora.alpha,
            lora_dropout=0.0,
            target_modules=list(lora.targets),
            use_rslora=lora.rslora,
        ),
    )
    apply_lora(ours, lora, seed=0)
    peft_params = dict(peft_model.named_parameters())
    torch.manual_seed(1)
    for path, layer in lora_layers(ours):
        prefix = f"base_model.model.{path}"
        a = peft_params[f"{prefix}.lora_A.default.weight"]
        b = peft_params[f"{prefix}.lora_B.default.weight"]
        with torch.no_grad():
            b.normal_(0.0, 0.05)
            layer.lora_A.weight.copy_(a)
            layer.lora_B.weight.copy_(b)
    return peft_model, ours


def peft_loss(peft_model: Any, examples: list[TokenizedExample]) -> torch.Tensor:
    """Sum over examples of the trained tokens' cross-entropy, each example run alone."""
    total = torch.zeros(())
    for ex in examples:
        logits = peft_model(input_ids=torch.tensor([ex.ids])).logits[0, :-1].float()
        labels = torch.tensor(
            [t if on else -100 for t, on in zip(ex.ids[1:], ex.trained[1:], strict=True)]
        )
        total = total + torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
    return total


@pytest.mark.parametrize(
    ("model_type", "overrides"),
    [
        ("llama", {}),
        ("qwen2", {}),
        ("mistral", {"sliding_window": None}),
        ("qwen3", {"head_dim": 16}),
        ("gemma", {"head_dim": 16}),
    ],
)
def test_lora_gradients_equal_peft(
    tiny_pair: Any, model_type: str, overrides: dict[str, Any]
) -> None:
    lora = LoraConfig(rank=4, alpha=8.0, rslora=model_type == "qwen2")
    peft_model, ours = peft_pair(tiny_pair, model_type, lora, **overrides)
    theirs = peft_loss(peft_model, EXAMPLES)
    theirs.backward()
    mine = token_losses(ours, flatten(EXAMPLES), chunk=7)  # several chunks
    mine.backward()
    torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)
    peft_params = dict(peft_model.named_parameters())
    for path, layer in lora_layers(ours):
        for part in ("lora_A", "lora_B"):
            ref = peft_params[f"base_model.model.{path}.{part}.default.weight"].grad
            got = getattr(layer, part).weight.grad
            assert ref is not None and got is not None
            rel = (got - ref).norm() / ref.norm()
            assert rel <= 1e-4, f"{path}.{part}: relative gradient error {rel:.2e}"


def test_packing_loss_is_the_sum_of_separate_losses(tiny_pair: Any) -> None:
    _, ours = tiny_pair("llama")
    apply_lora(ours, LoraConfig(rank=2), seed=0)
    with torch.no_grad():
        packed = token_losses(ours, flatten(EXAMPLES))
        separate = sum(token_losses(ours, flatten([ex])) for ex in EXAMPLES)
    torch.testing.assert_close(packed, separate, rtol=1e-6, atol=1e-5)


def test_bad_lora_settings(tiny_pair: Any) -> None:
    with pytest.raises(InvalidParameterError, match="--rank must be a positive integer"):
        LoraConfig(rank=0)
    _, ours = tiny_pair("llama")
    with pytest.raises(
        UserInputError, match=r"--targets query_key_value: .* it has down_proj, gate_proj"
    ):
        apply_lora(ours, LoraConfig(targets=("q_proj", "query_key_value")))
