"""Test helper: a random PEFT LoRA with SmolLM2-135M's shapes, made by PEFT itself (the base
is built on the meta device: only the adapter's own tensors get memory and values, B
included, so it changes the model's answers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def smollm2_adapter(folder: Path, seed: int, r: int = 16, std: float = 0.05, **kw: Any) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=256, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True,
    )  # fmt: skip
    with torch.device("meta"):
        base = LlamaForCausalLM(config)
    kw.setdefault("target_modules", ALL)
    peft = get_peft_model(base, LoraConfig(r=r, lora_alpha=2 * r, **kw))
    generator = torch.Generator().manual_seed(seed)
    state = {
        name: torch.randn(p.shape, generator=generator) * std
        for name, p in peft.named_parameters()
        if "lora_" in name
    }
    peft.save_pretrained(str(folder), state_dict=state)
    return folder
