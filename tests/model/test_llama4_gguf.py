"""A Llama 4 GGUF file, written the way llama.cpp's converter writes one (architecture
`llama4`, Q/K rows not permuted, fused experts split into stacked gate/up/down, vision
tensors dropped, what llama.cpp hard-codes not stored), loads into the same network as the
transformers model it came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import torch
import transformers as tf
from sequence_runner import SequenceRunner
from tiny_models import COMMON, backend_under_test, hf_logits, randomize

from hearth.errors import UnsupportedModelError
from hearth.model.build import build_model
from hearth.weights.loader import load_weights

TOL = 1e-4
# what a llama.cpp file can express: NoPE every 4th layer, chunk / temperature floor 8192
TEXT: dict[str, Any] = dict(
    COMMON,
    num_hidden_layers=4,
    head_dim=16,
    intermediate_size=32,
    intermediate_size_mlp=96,
    num_local_experts=4,
    interleave_moe_layer_step=2,
    rope_parameters={"rope_type": "default", "rope_theta": 20000.0},
)
_BLOCK = {  # HF name piece -> llama.cpp's (conversion/llama4.py + gguf's tensor map)
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "feed_forward.gate_proj": "ffn_gate",
    "feed_forward.up_proj": "ffn_up",
    "feed_forward.down_proj": "ffn_down",
    "feed_forward.router": "ffn_gate_inp",
    "feed_forward.shared_expert.gate_proj": "ffn_gate_shexp",
    "feed_forward.shared_expert.up_proj": "ffn_up_shexp",
    "feed_forward.shared_expert.down_proj": "ffn_down_shexp",
}


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {
        "token_embd.weight": state["model.embed_tokens.weight"],
        "output_norm.weight": state["model.norm.weight"],
        "output.weight": state["lm_head.weight"],
    }
    for name, t in state.items():
        if not name.startswith("model.layers."):
            continue
        layer, rest = name[len("model.layers.") :].split(".", 1)
        blk = f"blk.{layer}."
        if rest == "feed_forward.experts.gate_up_proj":  # (E, hidden, 2I) -> 2 x (E, I, hidden)
            gate, up = t.transpose(-1, -2).chunk(2, dim=-2)
            out[blk + "ffn_gate_exps.weight"], out[blk + "ffn_up_exps.weight"] = gate, up
        elif rest == "feed_forward.experts.down_proj":  # (E, I, hidden) -> (E, hidden, I)
            out[blk + "ffn_down_exps.weight"] = t.transpose(-1, -2)
        else:
            out[blk + _BLOCK[rest.removesuffix(".weight")] + ".weight"] = t
    return out


def _write(path: Path, h: dict[str, Any], state: dict[str, torch.Tensor], **extra: int) -> None:
    w = gguf.GGUFWriter(str(path), "llama4")
    for name, t in _tensors(state).items():
        w.add_tensor(name, t.contiguous().numpy().astype(np.float32))
    w.add_context_length(h["max_position_embeddings"])
    w.add_embedding_length(h["hidden_size"])
    w.add_feed_forward_length(h["intermediate_size_mlp"])
    w.add_block_count(h["num_hidden_layers"])
    w.add_head_count(h["num_attention_heads"])
    w.add_head_count_kv(h["num_key_value_heads"])
    w.add_key_length(h["head_dim"])
    w.add_value_length(h["head_dim"])
    w.add_rope_dimension_count(h["head_dim"])
    w.add_rope_freq_base(h["rope_parameters"]["rope_theta"])
    w.add_layer_norm_rms_eps(h["rms_norm_eps"])
    w.add_expert_count(h["num_local_experts"])
    w.add_expert_used_count(h["num_experts_per_tok"])
    w.add_expert_feed_forward_length(h["intermediate_size"])
    w.add_interleave_moe_layer_step(h["interleave_moe_layer_step"])
    w.add_vocab_size(h["vocab_size"])
    if "sliding_window" in extra:
        w.add_sliding_window(extra["sliding_window"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def reference() -> tuple[Any, dict[str, Any]]:
    torch.manual_seed(3)
    config = tf.Llama4TextConfig(**TEXT)
    hf = tf.AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    randomize(hf, unit_norms=True)
    return hf, config.to_dict()


def test_llama4_gguf_matches_transformers(
    reference: tuple[Any, dict[str, Any]], tmp_path: Path
) -> None:
    hf, h = reference
    path = tmp_path / "llama4.gguf"
    _write(path, h, hf.state_dict())
    loaded = load_weights(path)
    cfg = loaded.config
    assert cfg.no_rope_layers == (False, False, False, True)
    assert cfg.moe_layers == (False, True, False, True)
    assert cfg.attention_chunk_size == 8192 and cfg.qk_l2_norm and cfg.rope.interleaved
    model = build_model(cfg, loaded.tensors, backend=backend_under_test())
    ids = [5, 17, 200, 9, 41, 77, 128, 3, 250, 19, 0, 64]
    ref = hf_logits(hf, ids)
    ours = SequenceRunner(model, 1, 16, block_size=4).step([(0, ids)])[0]
    assert ref.abs().max() > 0.5
    assert (ours - ref).abs().max() <= TOL


def test_llama4_gguf_without_chunking_is_an_error(
    reference: tuple[Any, dict[str, Any]], tmp_path: Path
) -> None:
    hf, h = reference
    path = tmp_path / "mobilellm.gguf"
    _write(path, h, hf.state_dict(), sliding_window=0)
    with pytest.raises(UnsupportedModelError, match="sliding_window"):
        load_weights(path)
