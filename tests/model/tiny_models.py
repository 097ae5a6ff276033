"""Tiny random transformers models of every family, saved with `save_pretrained` and loaded
back by hearth: the reference pairs the model tests compare. And the backend the model
tests build with: `HEARTH_TEST_KERNELS=torch` runs them all on the reference PyTorch ops,
unset (or "auto") on the CPU backend's kernels; the parity tests must pass under both."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from hearth.model.backend import BackendConfig, select_backend
from hearth.model.build import build_model
from hearth.model.layers.decoder import Decoder
from hearth.model.layers.ops import Ops
from hearth.weights.loader import load_weights

# the environment variables of the model tests (hearth itself reads HEARTH_KERNELS and
# HEARTH_CPU_ISA): the parity tests under kernels=torch, or the kernels' avx2 build
TEST_KERNELS = "HEARTH_TEST_KERNELS"
TEST_CPU_ISA = "HEARTH_TEST_CPU_ISA"

COMMON: dict[str, Any] = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)


def config_under_test() -> BackendConfig:
    """The setting the model tests load with (HEARTH_TEST_KERNELS: auto or torch;
    HEARTH_TEST_CPU_ISA: the kernels' level, auto or one this CPU runs)."""
    return BackendConfig(
        os.environ.get(TEST_KERNELS, "auto"), cpu_isa=os.environ.get(TEST_CPU_ISA, "auto")
    )


def backend_under_test() -> Ops:
    """The backend the model tests build with (made once per process)."""
    return select_backend(config_under_test())


def randomize(model: torch.nn.Module, unit_norms: bool) -> None:
    """Random weights everywhere (transformers' init leaves norms at 1 / 0 and biases at 0,
    which would hide bugs in them). unit_norms: norm weights around 1 (not Gemma's 1 + w)."""
    with torch.no_grad():
        for name, p in list(model.named_parameters()) + list(model.named_buffers()):
            if not p.is_floating_point() or "inv_freq" in name or "embed_scale" in name:
                continue
            if "norm" in name:
                p.normal_(1.0 if unit_norms else 0.0, 0.2)
            else:
                p.normal_(0.0, 0.12)


def make_pair(tmp_path: Path, config: Any, seed: int = 0) -> tuple[Any, Decoder]:
    """(transformers model in eager attention, hearth Decoder loaded from its saved folder)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    hf = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    randomize(hf, unit_norms=not config.model_type.startswith("gemma"))
    folder = tmp_path / config.model_type
    hf.save_pretrained(folder)
    loaded = load_weights(folder)
    return hf, build_model(loaded.config, loaded.tensors, backend=backend_under_test())


def hf_logits(hf: Any, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return hf(torch.tensor([ids])).logits[0].float()
