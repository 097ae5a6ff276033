"""Test helpers: random PEFT LoRAs made by PEFT itself: one with SmolLM2-135M's shapes (the
base is built on the meta device: only the adapter's own tensors get memory and values, B
included, so it changes the model's answers), one on a given (tiny) transformers model; and
the GGUF LoRA that hearth's exporter makes of a PEFT folder."""

from __future__ import annotations

import copy
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


def peft_adapter(base: Any, folder: Path, seed: int, r: int, targets: list[str], **kw: Any) -> Any:
    """A random PEFT LoRA (init_lora_weights=False: B is not zero) on a copy of `base`,
    saved to `folder`; returns the PEFT model (the reference)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(
        r=r, lora_alpha=2 * r, target_modules=targets, init_lora_weights=False, **kw
    )
    model = get_peft_model(copy.deepcopy(base), config).eval()
    model.save_pretrained(str(folder))
    return model


def gguf_lora_of(
    folder: Path, path: Path, num_layers: int, num_heads: int, num_kv_heads: int
) -> Path:
    """The PEFT llama adapter in `folder` written by hearth's exporter as a GGUF LoRA."""
    from hearth.tune.adapter_files import load_adapter
    from hearth.tune.gguf_lora import write_gguf_lora

    write_gguf_lora(load_adapter(folder), "llama", num_layers, num_heads, num_kv_heads, path)
    return path


def assert_one_batch_matches(
    engine: Any,
    base: Any,
    prompts: list[list[int]],
    loras: list[str | None],
    reference_of: dict[str, Any],
) -> None:
    """The prompts (each with its adapter or none) scheduled as ONE step: every row's
    prompt and next-token logits within 1e-4 of its reference model's (`reference_of[name]`
    for an adapter, `base` for none), and each adapter row measurably off the base's."""
    from hearth.engine.sampling_params import SamplingParams

    for i, (prompt, lora) in enumerate(zip(prompts, loras, strict=True)):
        engine.add_request(
            str(i), prompt, SamplingParams(max_tokens=1, prompt_logprobs=0, lora=lora)
        )
    batch = engine.scheduler.schedule()
    assert len(batch.seqs) == len(prompts)  # one step: every row with its own adapter
    out = engine.runner.run(batch)
    for seq in batch.seqs:
        i = int(seq.request_id)
        lora = loras[i]
        reference = base if lora is None else reference_of[lora]
        with torch.no_grad():
            want = reference(torch.tensor([prompts[i]])).logits[0].float()
            plain = base(torch.tensor([prompts[i]])).logits[0].float()
        positions, prompt_logits = out.prompt_logits[seq.seq_id]
        got = torch.cat([prompt_logits, out.logits[out.sample_seqs.index(seq)][None]])
        assert (got - want[positions[0] :]).abs().max().item() <= 1e-4
        if lora is not None:  # the adapter does change the numbers
            assert (got - plain[positions[0] :]).abs().max().item() > 1e-2
    for i in range(len(prompts)):
        engine.abort(str(i))
