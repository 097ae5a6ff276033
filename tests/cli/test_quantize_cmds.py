"""`hearth quantize` through the CLI: an HF folder and a stored GGUF become new store models
that hearth runs; a quantized source is refused without --allow-requantize, naming the loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_runner import Cli


def test_quantize_hf_folder_and_stored_gguf(
    cli: Cli,
    smollm2_gguf: Path,
    hearth_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    monkeypatch.setenv("COLUMNS", "200")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path / "tiny")
    (tmp_path / "tiny" / "README.md").write_text("---\nlicense: mit\n---\n")
    code, out, err = cli("--json", "quantize", str(tmp_path / "tiny"), "--type", "q8_0")
    assert code == 0, err
    record = json.loads(out)
    assert record["name"] == "tiny:q8_0" and record["quantization"] == "Q8_0"
    assert record["license_id"] == "mit"

    assert cli("import", str(smollm2_gguf), "--name", "smol")[0] == 0
    code, _, err = cli("quantize", "smol", "--type", "Q8_0")
    assert code == 2 and "already quantized (Q4_1/Q8_0)" in err and "--allow-requantize" in err
    code, _, err = cli("quantize", "nothere", "--type", "Q8_0")
    assert code == 2 and "neither a stored model nor a path" in err
    code, _, err = cli("quantize", "smol", "--type", "Q3_K_S")
    assert code == 2 and "unknown quantization type 'Q3_K_S'" in err


@pytest.mark.slow  # de-quantizes and re-quantizes all of SmolLM2, then runs it (~1 min)
def test_requantized_smollm2_runs(cli: Cli, smollm2_gguf: Path, hearth_home: Path) -> None:
    assert cli("import", str(smollm2_gguf), "--name", "smol")[0] == 0
    code, out, err = cli(
        "quantize", "smol", "--type", "Q8_0", "--name", "smol:q8", "--allow-requantize"
    )
    assert code == 0, err
    assert out.startswith("quantized smol to smol:q8 (Q8_0")
    code, card, _ = cli("show", "smol:q8", "--json")
    assert json.loads(card)["license_id"] == "apache-2.0"  # the license travels in the file

    from hearth.engine.llm import LLM
    from hearth.engine.sampling_params import SamplingParams

    llm = LLM("smol:q8", max_model_len=256)
    text = (
        llm.chat(
            [{"role": "user", "content": "What is the capital of France?"}],
            SamplingParams(temperature=0, max_tokens=8),
        )[0]
        .outputs[0]
        .text
    )
    assert "Paris" in text
