"""DPO: hearth's preference loss and reward margins on a fixed batch equal TRL's DPOTrainer
computation (the same tiny model, LoRA weights and tokens; the reference is the model with
its adapter off in both)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from hearth.model.build import build_model
from hearth.model.layers.lora import LoraConfig, adapter_disabled, apply_lora, lora_layers
from hearth.tune.forward import flatten, sequence_logprobs
from hearth.tune.tokenize import TokenizedExample
from hearth.tune.trainer import dpo_loss
from hearth.weights.loader import load_weights

BETA = 0.1


def _word_tokenizer():  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({f"t{i}": i for i in range(128)}, unk_token="t0"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="t0", eos_token="t1")


def test_dpo_loss_and_margins_equal_trl(tmp_path: Path) -> None:
    import datasets
    import peft
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
    )  # fmt: skip
    hf = LlamaForCausalLM(config)
    hf.save_pretrained(tmp_path / "base")
    rows = [
        {"prompt": "t5 t6 t7", "chosen": " t8 t9", "rejected": " t10"},
        {"prompt": "t11 t12", "chosen": " t13", "rejected": " t14 t15 t16"},
    ]
    trainer = DPOTrainer(
        model=hf,
        args=DPOConfig(
            output_dir=tempfile.mkdtemp(dir=tmp_path),
            beta=BETA,
            report_to=[],
            use_cpu=True,
            per_device_train_batch_size=2,
        ),
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=_word_tokenizer(),
        peft_config=peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    lora = LoraConfig(rank=4, alpha=8.0, targets=("q_proj", "v_proj"))
    loaded = load_weights(tmp_path / "base")
    ours = build_model(loaded.config, loaded.tensors)
    apply_lora(ours, lora)
    params = dict(trainer.model.named_parameters())
    torch.manual_seed(1)
    for path, layer in lora_layers(ours):
        a = params[f"base_model.model.{path}.lora_A.default.weight"]
        b = params[f"base_model.model.{path}.lora_B.default.weight"]
        with torch.no_grad():
            b.normal_(0.0, 0.3)  # a policy that differs from the reference
            layer.lora_A.weight.copy_(a)
            layer.lora_B.weight.copy_(b)

    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    trainer.model.eval()
    with torch.no_grad():
        theirs = trainer._compute_loss(trainer.model, batch, return_outputs=False)
    metrics = {k: v[-1] for k, v in trainer._metrics["eval"].items()}

    examples = []
    for i in range(batch["input_ids"].shape[0]):
        n = int(batch["attention_mask"][i].sum())
        ids = batch["input_ids"][i, :n].tolist()
        trained = [bool(x) for x in batch["completion_mask"][i, :n]]
        examples.append(TokenizedExample(tuple(ids), tuple(trained), f"row {i}"))
    pairs = len(rows)
    flat = flatten(examples)  # chosen rows first, then rejected (TRL's order)
    with torch.no_grad():
        policy = sequence_logprobs(ours, flat, chunk=3)
        with adapter_disabled(ours):
            ref = sequence_logprobs(ours, flat)
    losses, chosen, rejected = dpo_loss(
        policy[:pairs], policy[pairs:], ref[:pairs], ref[pairs:], BETA
    )
    torch.testing.assert_close(losses.mean(), theirs.float(), rtol=1e-4, atol=1e-4)
    assert abs(float((chosen - rejected).mean()) - metrics["rewards/margins"]) <= 1e-4
    assert abs(float(chosen.mean()) - metrics["rewards/chosen"]) <= 1e-4
    assert abs(float((chosen > rejected).float().mean()) - metrics["rewards/accuracies"]) <= 1e-6
    assert abs(metrics["rewards/margins"]) > 1e-3  # the adapter makes a difference
